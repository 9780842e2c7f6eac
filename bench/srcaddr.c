/*
 * LD_PRELOAD shim for wrk: spread its connections over many client addresses.
 *
 * wrk connects from 127.0.0.1 only. tlsfront's shared session cache routes each
 * client ADDRESS to one worker (SO_REUSEPORT group + BPF hash, docs/sessions.md),
 * so with one address every connection would reach the same worker. Real clients
 * come from many addresses: before each IPv4 connect() to a loopback address we
 * bind the socket to 127.0.0.N (N = 2 .. 2 + BENCH_SRC_ADDRS - 1, round robin,
 * port 0). Every front gets the same treatment.
 *
 * Build: gcc -shared -fPIC -O2 -o srcaddr.so srcaddr.c -ldl
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*connect_fn)(int, const struct sockaddr *, socklen_t);

int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    static connect_fn real_connect;
    static unsigned counter;
    static unsigned count;
    if (real_connect == NULL) {
        real_connect = (connect_fn)dlsym(RTLD_NEXT, "connect");
        const char *env = getenv("BENCH_SRC_ADDRS");
        count = env ? (unsigned)atoi(env) : 64;
        if (count == 0 || count > 250)
            count = 64;
    }
    if (addr != NULL && addr->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *to = (const struct sockaddr_in *)addr;
        if ((ntohl(to->sin_addr.s_addr) >> 24) == 127) {
            struct sockaddr_in from;
            memset(&from, 0, sizeof from);
            from.sin_family = AF_INET;
            from.sin_addr.s_addr = htonl(0x7f000002u + (counter++ % count));
            (void)bind(fd, (const struct sockaddr *)&from, sizeof from); /* best effort */
        }
    }
    return real_connect(fd, addr, len);
}
