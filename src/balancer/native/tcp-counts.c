#include <linux/tcp.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include "tcp-counts.h"

void counts_of(int fd, tcp_counts *c) {
  struct tcp_info info;
  socklen_t n = sizeof info;
  memset(&info, 0, sizeof info);
  memset(c, 0, sizeof *c);
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &n) < 0) return;
  c->received = info.tcpi_bytes_received;
  c->sent = info.tcpi_bytes_sent;
  c->acked = info.tcpi_bytes_acked;
  c->recv_idle_ms = info.tcpi_last_data_recv;
  c->closed = info.tcpi_state == 7; /* TCP_CLOSE (include/net/tcp_states.h; <netinet/tcp.h> cannot be included beside <linux/tcp.h>) */
  c->idle_ms = info.tcpi_last_data_recv < info.tcpi_last_data_sent ? info.tcpi_last_data_recv : info.tcpi_last_data_sent;
}
