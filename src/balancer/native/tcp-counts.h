// A socket's TCP counters (TCP_INFO), in a file of its own: <linux/tcp.h>, which has the 64-bit byte
// counters, cannot be included next to libuv's <netinet/tcp.h>.
#pragma once
#include <stdint.h>

typedef struct {
  uint64_t received; /* payload bytes received */
  uint64_t sent;     /* payload bytes sent (retransmissions included) */
  uint64_t acked;    /* payload bytes the peer acknowledged */
  uint32_t idle_ms;  /* since data last went either way */
  uint32_t closed;   /* the connection is gone (TCP_CLOSE: reset, or closed both ways): nothing more can be sent */
  uint32_t recv_idle_ms; /* since data was last received (tcpi_last_data_recv, jiffies: a few ms steps) */
} tcp_counts;

void counts_of(int fd, tcp_counts *counts);
