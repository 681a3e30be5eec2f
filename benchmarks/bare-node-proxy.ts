// The smallest TCP proxy Node can run: accept, connect, pipe both ways. The balancer bench runs it
// beside the built-in balancer to show what Node itself costs per connection (the built-in balancer's
// floor), apart from what the balancer adds. Usage: node dist/benchmarks/bare-node-proxy.js LISTEN_PORT TARGET_PORT
import net from 'node:net';

const [listenPort, targetPort] = process.argv.slice(2).map(Number);
if (!listenPort || !targetPort) {
  console.error('usage: bare-node-proxy LISTEN_PORT TARGET_PORT');
  process.exit(2);
}
net
  .createServer((client) => {
    const server = net.connect({ host: '127.0.0.1', port: targetPort });
    client.setNoDelay(true);
    server.setNoDelay(true);
    client.pipe(server);
    server.pipe(client);
    client.on('error', () => server.destroy());
    server.on('error', () => client.destroy());
    client.on('close', () => server.destroy());
    server.on('close', () => client.destroy());
  })
  .listen(listenPort, '127.0.0.1', () => console.log(`listening on 127.0.0.1:${listenPort}`));
process.on('SIGTERM', () => process.exit(0));
