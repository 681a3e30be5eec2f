// The balancer's kernel relay: once a session is established, its two sockets (client side, server side)
// are put in a BPF sockhash whose stream-verdict program redirects every byte received on one socket to
// the other one's send queue, inside the kernel. The balancer process is not woken per query any more:
// this is what lets a JavaScript balancer pass more queries than HAProxy's user-space relay on the same
// cores (benchmarks/balancer.ts). Linux only, and it needs CAP_BPF + CAP_NET_ADMIN (root); without them the
// balancer relays through Node sockets as before (src/balancer/kernel-relay.ts says which and why).
//
// The program, in BPF instructions (no clang needed), for every chunk a relayed socket receives:
//  1. notes, under the socket's cookie in a second map, when (ktime ns) and whether the chunk ends with
//     ReadyForQuery ('Z', length 5, status I/T/E): the balancer cannot see queries any more, but it must
//     know whether one is in flight before it closes a session of a server marked down;
//  2. builds the key of the socket (its 4-tuple) on the stack and returns
//     bpf_sk_redirect_hash(skb, map, &key, 0), which finds the peer socket stored under that key.
// Step 1 only reads (skb_load_bytes of at most the last 6 bytes, any failure skips it) and writes the
// state map (a failed update is ignored); the verdict is step 2's alone. So bytes that are not
// PostgreSQL framing (a TLS session's records, relayed from the server's 'S' on) are redirected like
// any others, never held, dropped or changed: only their "ready" note means nothing, and lastReceived()
// (the timestamps alone) serves such sessions instead of inFlight().
//
// JavaScript API (N-API):
//   unavailable()                          -> undefined, or why the relay cannot run here (one line)
//   open(clientFd, serverFd, toClient, onDisconnect(side, errno, clientClosed)[, toServer])
//                                          -> handle; the fds are duplicated, the caller closes its own;
//                                          toClient / toServer (Buffer or null) are sent once both
//                                          sockets are in the sockhash
//   pending(handle)  -> bytes received on one side and not yet sent on the other
//   inFlight(handle) -> true when the client sent data after the server's last ReadyForQuery
//   lastReceived(handle) -> [ms since the client's last bytes arrived, same for the server's]: the
//                        program's timestamps (ns), or TCP_INFO's tcpi_last_data_recv for a socket that
//                        has received nothing since it was relayed
//   info(handle)     -> [bytes from the client, bytes to the client (since the connection began),
//                        ms since data last went through the client socket, same for the server]
//   close(handle[, farewell]) -> the final info(); `farewell` (a Buffer) is sent to the client first;
//                        both sockets are closed
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <node_api.h>
#include <uv.h>
#include "tcp-counts.h"

#define INSN(c, d, s, o, i) ((struct bpf_insn){ .code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i) })
#define LDX_W(d, s, o) INSN(BPF_LDX | BPF_MEM | BPF_W, d, s, o, 0)
#define STX_W(d, s, o) INSN(BPF_STX | BPF_MEM | BPF_W, d, s, o, 0)
#define MOV64_REG(d, s) INSN(BPF_ALU64 | BPF_MOV | BPF_X, d, s, 0, 0)
#define MOV64_IMM(d, i) INSN(BPF_ALU64 | BPF_MOV | BPF_K, d, 0, 0, i)
#define ADD64_IMM(d, i) INSN(BPF_ALU64 | BPF_ADD | BPF_K, d, 0, 0, i)
#define RSH32_IMM(d, i) INSN(BPF_ALU | BPF_RSH | BPF_K, d, 0, 0, i)
#define JLE_IMM(d, i, o) INSN(BPF_JMP | BPF_JLE | BPF_K, d, 0, o, i)
#define JLT_IMM(d, i, o) INSN(BPF_JMP | BPF_JLT | BPF_K, d, 0, o, i)
#define JNE_IMM(d, i, o) INSN(BPF_JMP | BPF_JNE | BPF_K, d, 0, o, i)
#define JEQ_IMM(d, i, o) INSN(BPF_JMP | BPF_JEQ | BPF_K, d, 0, o, i)
#define LDX_B(d, s, o) INSN(BPF_LDX | BPF_MEM | BPF_B, d, s, o, 0)
#define STX_DW(d, s, o) INSN(BPF_STX | BPF_MEM | BPF_DW, d, s, o, 0)
#define ST_W(d, o, i) INSN(BPF_ST | BPF_MEM | BPF_W, d, 0, o, i)
#define SUB64_IMM(d, i) INSN(BPF_ALU64 | BPF_SUB | BPF_K, d, 0, 0, i)
#define LD_MAP(d, fd) INSN(BPF_LD | BPF_DW | BPF_IMM, d, BPF_PSEUDO_MAP_FD, 0, fd), INSN(0, 0, 0, 0, 0)
#define CALL(f) INSN(BPF_JMP | BPF_CALL, 0, 0, 0, f)

/** The sockhash key: the 4-tuple of the socket that receives, as the verdict program sees it. */
struct relay_key {
  uint32_t remote_ip4; /* network order */
  uint32_t local_ip4;  /* network order */
  uint32_t remote_port; /* network order, in the low 16 bits */
  uint32_t local_port;  /* host order */
};

/** What the program notes per socket (key: the socket's cookie). */
struct relay_state {
  uint64_t last_ns;    /* when it last received data */
  uint32_t ready;      /* that data ended with ReadyForQuery */
  uint32_t pad;
};

static int map_fd = -1;
static int state_fd = -1;
static int setup_done = 0;
static char setup_error[300];

static long sys_bpf(int cmd, union bpf_attr *attr) { return syscall(__NR_bpf, cmd, attr, sizeof(*attr)); }

static void setup(void) {
  if (setup_done) return;
  setup_done = 1;
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.map_type = BPF_MAP_TYPE_SOCKHASH;
  attr.key_size = sizeof(struct relay_key);
  attr.value_size = sizeof(int);
  attr.max_entries = 1 << 16;
  int map = (int)sys_bpf(BPF_MAP_CREATE, &attr);
  if (map < 0) {
    snprintf(setup_error, sizeof setup_error, "the kernel refused a BPF sockhash: %s (needs Linux >= 5.10 and root)", strerror(errno));
    return;
  }
  memset(&attr, 0, sizeof attr);
  attr.map_type = BPF_MAP_TYPE_HASH;
  attr.key_size = sizeof(uint64_t);
  attr.value_size = sizeof(struct relay_state);
  attr.max_entries = 1 << 17;
  int state = (int)sys_bpf(BPF_MAP_CREATE, &attr);
  if (state < 0) {
    snprintf(setup_error, sizeof setup_error, "the kernel refused a BPF hash map: %s", strerror(errno));
    close(map);
    return;
  }
  /* Stack: -16 the redirect key, -24 the cookie, -40 the state, -48 the chunk's last 6 bytes. */
  struct bpf_insn program[] = {
    MOV64_REG(6, 1),
    CALL(BPF_FUNC_get_socket_cookie), STX_DW(10, 0, -24),
    CALL(BPF_FUNC_ktime_get_ns), STX_DW(10, 0, -40),
    ST_W(10, -32, 0), ST_W(10, -28, 0),
    LDX_W(2, 6, offsetof(struct __sk_buff, len)), JLT_IMM(2, 6, 23),
    SUB64_IMM(2, 6), MOV64_REG(1, 6), MOV64_REG(3, 10), ADD64_IMM(3, -48), MOV64_IMM(4, 6),
    CALL(BPF_FUNC_skb_load_bytes), JNE_IMM(0, 0, 16),
    LDX_B(1, 10, -48), JNE_IMM(1, 'Z', 14),
    LDX_B(1, 10, -47), JNE_IMM(1, 0, 12),
    LDX_B(1, 10, -46), JNE_IMM(1, 0, 10),
    LDX_B(1, 10, -45), JNE_IMM(1, 0, 8),
    LDX_B(1, 10, -44), JNE_IMM(1, 5, 6),
    LDX_B(1, 10, -43), JEQ_IMM(1, 'I', 3),
    JEQ_IMM(1, 'T', 2),
    JEQ_IMM(1, 'E', 1),
    INSN(BPF_JMP | BPF_JA, 0, 0, 1, 0),
    ST_W(10, -32, 1),
    LD_MAP(1, state), MOV64_REG(2, 10), ADD64_IMM(2, -24), MOV64_REG(3, 10), ADD64_IMM(3, -40), MOV64_IMM(4, BPF_ANY),
    CALL(BPF_FUNC_map_update_elem),
    LDX_W(2, 6, offsetof(struct __sk_buff, remote_ip4)), STX_W(10, 2, -16),
    LDX_W(2, 6, offsetof(struct __sk_buff, local_ip4)), STX_W(10, 2, -12),
    // remote_port is the network-order port, shifted to the high half on some kernels: normalise.
    LDX_W(2, 6, offsetof(struct __sk_buff, remote_port)), JLE_IMM(2, 0xffff, 1), RSH32_IMM(2, 16),
    STX_W(10, 2, -8),
    LDX_W(2, 6, offsetof(struct __sk_buff, local_port)), STX_W(10, 2, -4),
    MOV64_REG(1, 6),
    LD_MAP(2, map),
    MOV64_REG(3, 10), ADD64_IMM(3, -16),
    MOV64_IMM(4, 0),
    CALL(BPF_FUNC_sk_redirect_hash),
    INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
  };
  static char verifier_log[8192];
  memset(&attr, 0, sizeof attr);
  attr.prog_type = BPF_PROG_TYPE_SK_SKB;
  attr.insns = (uintptr_t)program;
  attr.insn_cnt = sizeof program / sizeof program[0];
  attr.license = (uintptr_t)"GPL";
  attr.log_buf = (uintptr_t)verifier_log;
  attr.log_size = sizeof verifier_log;
  attr.log_level = 1;
  int prog = (int)sys_bpf(BPF_PROG_LOAD, &attr);
  if (prog < 0) {
    snprintf(setup_error, sizeof setup_error, "the kernel refused the relay's BPF program: %s", strerror(errno));
    if (getenv("PGLAB_BPF_LOG")) fprintf(stderr, "%s\n", verifier_log);
    close(map);
    close(state);
    return;
  }
  memset(&attr, 0, sizeof attr);
  attr.target_fd = map;
  attr.attach_bpf_fd = prog;
  attr.attach_type = BPF_SK_SKB_STREAM_VERDICT;
  if (sys_bpf(BPF_PROG_ATTACH, &attr) < 0) {
    snprintf(setup_error, sizeof setup_error, "the kernel refused to attach a stream verdict to a sockhash: %s", strerror(errno));
    close(prog);
    close(map);
    close(state);
    return;
  }
  close(prog); /* the map holds it */
  map_fd = map;
  state_fd = state;
}

static int key_of(int fd, struct relay_key *key) {
  struct sockaddr_in local, remote;
  socklen_t n = sizeof local;
  if (getsockname(fd, (struct sockaddr *)&local, &n) < 0 || local.sin_family != AF_INET) return -1;
  n = sizeof remote;
  if (getpeername(fd, (struct sockaddr *)&remote, &n) < 0 || remote.sin_family != AF_INET) return -1;
  key->remote_ip4 = remote.sin_addr.s_addr;
  key->local_ip4 = local.sin_addr.s_addr;
  key->remote_port = remote.sin_port;
  key->local_port = ntohs(local.sin_port);
  return 0;
}

/** Store `value_fd` under the key of `key_fd`: what `key_fd` receives goes to `value_fd`. */
static int map_put(int key_fd, int value_fd) {
  struct relay_key key;
  if (key_of(key_fd, &key) < 0) return -1;
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.map_fd = map_fd;
  attr.key = (uintptr_t)&key;
  attr.value = (uintptr_t)&value_fd;
  attr.flags = BPF_ANY;
  return (int)sys_bpf(BPF_MAP_UPDATE_ELEM, &attr);
}

static void map_delete(int map, const void *key) {
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.map_fd = map;
  attr.key = (uintptr_t)key;
  sys_bpf(BPF_MAP_DELETE_ELEM, &attr);
}

/** Take a socket out of the sockhash (it goes on being a plain socket). */
static void map_remove(int key_fd) {
  struct relay_key key;
  if (key_of(key_fd, &key) == 0) map_delete(map_fd, &key);
}

/** What the program noted for a socket; zeroes when it has received nothing since it was relayed. */
static struct relay_state state_of(uint64_t cookie) {
  struct relay_state state;
  memset(&state, 0, sizeof state);
  union bpf_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.map_fd = state_fd;
  attr.key = (uintptr_t)&cookie;
  attr.value = (uintptr_t)&state;
  if (sys_bpf(BPF_MAP_LOOKUP_ELEM, &attr) < 0) memset(&state, 0, sizeof state);
  return state;
}

/** Write all of buf to a non-blocking socket, waiting up to 1 s in all for room. */
static int send_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
    if (n > 0) {
      buf += n;
      len -= (size_t)n;
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      struct pollfd p = { .fd = fd, .events = POLLOUT };
      if (poll(&p, 1, 1000) <= 0) return -1;
    } else {
      return -1;
    }
  }
  return 0;
}

/** Bytes that reached `from` before it was in the map stay in its receive queue: send them on. */
static int forward_queued(int from, int to) {
  char buf[16384];
  for (;;) {
    ssize_t n = recv(from, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      if (send_all(to, buf, (size_t)n) < 0) return -1;
    } else {
      return 0; /* EAGAIN, or EOF / error, which the disconnect poll reports */
    }
  }
}

typedef struct relay {
  int fd[2]; /* 0: client side, 1: server side */
  uv_poll_t poll[2];
  int polls_open;
  int closed;
  uint64_t base_received[2], base_sent[2];
  int fin[2]; /* that side closed in order: its FIN counts as one received byte in TCP_INFO */
  uint64_t cookie[2];
  napi_env env;
  napi_ref callback;
  napi_ref self;
} relay;

static void poll_closed(uv_handle_t *handle) {
  relay *r = handle->data;
  if (--r->polls_open == 0 && r->self) {
    napi_delete_reference(r->env, r->self); /* the finaliser may now free it */
    r->self = NULL;
  }
}

static void on_disconnect(uv_poll_t *handle, int status, int events) {
  relay *r = handle->data;
  int side = handle == &r->poll[0] ? 0 : 1;
  (void)events;
  uv_poll_stop(handle);
  if (r->closed || !r->callback) return;
  int error = 0;
  socklen_t n = sizeof error;
  getsockopt(r->fd[side], SOL_SOCKET, SO_ERROR, &error, &n);
  if (!error && status < 0) error = EIO;
  r->fin[side] = !error;
  /* The client's FIN, if it came: then the session ended because the client left, whatever the
     server side reports (EPIPE once the redirected Terminate made the backend close). */
  struct pollfd client = { .fd = r->fd[0], .events = POLLRDHUP };
  int client_closed = poll(&client, 1, 0) == 1 && (client.revents & POLLRDHUP) != 0;
  napi_handle_scope scope;
  napi_open_handle_scope(r->env, &scope);
  napi_value callback, global, argv[3], result;
  napi_get_reference_value(r->env, r->callback, &callback);
  napi_get_global(r->env, &global);
  napi_create_int32(r->env, side, &argv[0]);
  napi_create_int32(r->env, error, &argv[1]);
  napi_get_boolean(r->env, client_closed, &argv[2]);
  if (napi_make_callback(r->env, NULL, global, callback, 3, argv, &result) == napi_pending_exception) {
    napi_value exception;
    napi_get_and_clear_last_exception(r->env, &exception);
    napi_fatal_exception(r->env, exception);
  }
  napi_close_handle_scope(r->env, scope);
}

static void relay_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  relay *r = data;
  if (!r->closed) {
    /* Only reached once both polls are closed, i.e. after close(); kept for safety. */
    close(r->fd[0]);
    close(r->fd[1]);
  }
  free(r);
}

#define THROW(env, msg) do { napi_throw_error(env, NULL, msg); return NULL; } while (0)

static relay *relay_of(napi_env env, napi_value value) {
  void *data = NULL;
  if (napi_get_value_external(env, value, &data) != napi_ok || !data) return NULL;
  return data;
}

static napi_value js_unavailable(napi_env env, napi_callback_info info) {
  (void)info;
  setup();
  napi_value result;
  if (map_fd >= 0) napi_get_undefined(env, &result);
  else napi_create_string_utf8(env, setup_error, NAPI_AUTO_LENGTH, &result);
  return result;
}

static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 4) THROW(env, "open(clientFd, serverFd, toClient, onDisconnect[, toServer])");
  setup();
  if (map_fd < 0) THROW(env, setup_error);
  int32_t given[2];
  napi_get_value_int32(env, argv[0], &given[0]);
  napi_get_value_int32(env, argv[1], &given[1]);
  void *to_client = NULL;
  size_t to_client_len = 0;
  bool is_buffer = false;
  napi_is_buffer(env, argv[2], &is_buffer);
  if (is_buffer) napi_get_buffer_info(env, argv[2], &to_client, &to_client_len);
  void *to_server = NULL;
  size_t to_server_len = 0;
  is_buffer = false;
  if (argc > 4) napi_is_buffer(env, argv[4], &is_buffer);
  if (is_buffer) napi_get_buffer_info(env, argv[4], &to_server, &to_server_len);

  relay *r = calloc(1, sizeof *r);
  if (!r) THROW(env, "out of memory");
  r->env = env;
  r->fd[0] = fcntl(given[0], F_DUPFD_CLOEXEC, 0);
  r->fd[1] = r->fd[0] < 0 ? -1 : fcntl(given[1], F_DUPFD_CLOEXEC, 0);
  const char *failed = NULL;
  if (r->fd[1] < 0) failed = "could not duplicate the session's sockets";
  else if (map_put(r->fd[0], r->fd[1]) < 0 || map_put(r->fd[1], r->fd[0]) < 0) failed = "could not put the session's sockets in the sockhash";
  if (failed) {
    char message[200];
    snprintf(message, sizeof message, "%s: %s", failed, strerror(errno));
    /* Neither socket may stay half in the map: the caller goes on relaying them through Node. */
    if (r->fd[1] >= 0) {
      map_remove(r->fd[0]);
      map_remove(r->fd[1]);
    }
    if (r->fd[0] >= 0) close(r->fd[0]);
    if (r->fd[1] >= 0) close(r->fd[1]);
    free(r);
    THROW(env, message);
  }
  for (int side = 0; side < 2; side++) {
    fcntl(r->fd[side], F_SETFL, fcntl(r->fd[side], F_GETFL) | O_NONBLOCK);
    socklen_t n = sizeof r->cookie[side];
    getsockopt(r->fd[side], SOL_SOCKET, SO_COOKIE, &r->cookie[side], &n);
  }
  /* What Node held back (the server's last startup bytes, or a TLS client's first request), then
     anything that arrived after it, before the sockets were in the map: in the order it came. */
  if (to_server_len) send_all(r->fd[1], to_server, to_server_len);
  forward_queued(r->fd[0], r->fd[1]);
  if (to_client_len) send_all(r->fd[0], to_client, to_client_len);
  forward_queued(r->fd[1], r->fd[0]);
  for (int side = 0; side < 2; side++) {
    tcp_counts c;
    counts_of(r->fd[side], &c);
    r->base_received[side] = c.received;
    r->base_sent[side] = c.sent;
  }
  napi_create_reference(env, argv[3], 1, &r->callback);
  uv_loop_t *loop;
  napi_get_uv_event_loop(env, &loop);
  napi_value handle;
  napi_create_external(env, r, relay_finalize, NULL, &handle);
  napi_create_reference(env, handle, 1, &r->self);
  for (int side = 0; side < 2; side++) {
    uv_poll_init_socket(loop, &r->poll[side], r->fd[side]);
    r->poll[side].data = r;
    r->polls_open++;
    /* Only hang-ups and errors: asking for readable would wake us for every redirected query. */
    uv_poll_start(&r->poll[side], UV_DISCONNECT, on_disconnect);
  }
  return handle;
}

static napi_value info_array(napi_env env, relay *r) {
  tcp_counts client, server;
  counts_of(r->fd[0], &client);
  counts_of(r->fd[1], &server);
  double values[4] = { (double)(client.received - (uint64_t)r->fin[0]), (double)client.acked, (double)client.idle_ms, (double)server.idle_ms };
  napi_value array, item;
  napi_create_array_with_length(env, 4, &array);
  for (uint32_t i = 0; i < 4; i++) {
    napi_create_double(env, values[i], &item);
    napi_set_element(env, array, i, item);
  }
  return array;
}

/** The relay a function was given as its one argument; NULL (an exception pending) if none or closed. */
static relay *open_relay_argument(napi_env env, napi_callback_info info, const char *function) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  relay *r = argc < 1 ? NULL : relay_of(env, argv[0]);
  if (r && !r->closed) return r;
  char message[80];
  snprintf(message, sizeof message, "%s(handle): not an open relay", function);
  napi_throw_error(env, NULL, message);
  return NULL;
}

static napi_value js_pending(napi_env env, napi_callback_info info) {
  relay *r = open_relay_argument(env, info, "pending");
  if (!r) return NULL;
  tcp_counts c[2];
  counts_of(r->fd[0], &c[0]);
  counts_of(r->fd[1], &c[1]);
  double pending = 0;
  for (int side = 0; side < 2; side++) {
    /* A peer that reset (a TLS client gone, answered by RST when the server's close_notify reached it)
       will never take what is left for it. */
    if (c[1 - side].closed) continue;
    int64_t in = (int64_t)(c[side].received - r->base_received[side]) - r->fin[side];
    int64_t out = (int64_t)(c[1 - side].sent - r->base_sent[1 - side]);
    if (in > out) pending += (double)(in - out);
  }
  napi_value result;
  napi_create_double(env, pending, &result);
  return result;
}

static napi_value js_in_flight(napi_env env, napi_callback_info info) {
  relay *r = open_relay_argument(env, info, "inFlight");
  if (!r) return NULL;
  struct relay_state client = state_of(r->cookie[0]);
  struct relay_state server = state_of(r->cookie[1]);
  /* Relayed right after a ReadyForQuery: idle until the client speaks. */
  bool in_flight = client.last_ns > server.last_ns || (server.last_ns != 0 && !server.ready);
  napi_value result;
  napi_get_boolean(env, in_flight, &result);
  return result;
}

/** Milliseconds since `side`'s socket last received data (see lastReceived above). */
static double ms_since_received(relay *r, int side) {
  struct relay_state state = state_of(r->cookie[side]);
  if (state.last_ns) {
    /* bpf_ktime_get_ns() is CLOCK_MONOTONIC. */
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    uint64_t now_ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
    return now_ns > state.last_ns ? (double)(now_ns - state.last_ns) / 1e6 : 0;
  }
  tcp_counts c;
  counts_of(r->fd[side], &c);
  return (double)c.recv_idle_ms;
}

static napi_value js_last_received(napi_env env, napi_callback_info info) {
  relay *r = open_relay_argument(env, info, "lastReceived");
  if (!r) return NULL;
  napi_value array, item;
  napi_create_array_with_length(env, 2, &array);
  for (uint32_t side = 0; side < 2; side++) {
    napi_create_double(env, ms_since_received(r, (int)side), &item);
    napi_set_element(env, array, side, item);
  }
  return array;
}

static napi_value js_info(napi_env env, napi_callback_info info) {
  relay *r = open_relay_argument(env, info, "info");
  if (!r) return NULL;
  return info_array(env, r);
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  relay *r = open_relay_argument(env, info, "close");
  if (!r) return NULL;
  /* A last message for the client (a FATAL when the balancer ends an idle session), sent before the close. */
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  bool is_buffer = false;
  if (argc > 1) napi_is_buffer(env, argv[1], &is_buffer);
  if (is_buffer) {
    void *farewell = NULL;
    size_t farewell_len = 0;
    napi_get_buffer_info(env, argv[1], &farewell, &farewell_len);
    if (farewell_len) send_all(r->fd[0], farewell, farewell_len);
  }
  napi_value result = info_array(env, r);
  r->closed = 1;
  for (int side = 0; side < 2; side++) {
    uv_close((uv_handle_t *)&r->poll[side], poll_closed);
    map_delete(state_fd, &r->cookie[side]);
  }
  /* Closing the last descriptor takes the socket out of the sockhash. */
  close(r->fd[0]);
  close(r->fd[1]);
  napi_delete_reference(env, r->callback);
  r->callback = NULL;
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor properties[] = {
    { "unavailable", NULL, js_unavailable, NULL, NULL, NULL, napi_enumerable, NULL },
    { "open", NULL, js_open, NULL, NULL, NULL, napi_enumerable, NULL },
    { "pending", NULL, js_pending, NULL, NULL, NULL, napi_enumerable, NULL },
    { "inFlight", NULL, js_in_flight, NULL, NULL, NULL, napi_enumerable, NULL },
    { "lastReceived", NULL, js_last_received, NULL, NULL, NULL, napi_enumerable, NULL },
    { "info", NULL, js_info, NULL, NULL, NULL, napi_enumerable, NULL },
    { "close", NULL, js_close, NULL, NULL, NULL, napi_enumerable, NULL },
  };
  napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties);
  return exports;
}

NAPI_MODULE(kernel_relay, init)
