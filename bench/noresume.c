/*
 * LD_PRELOAD shim for wrk: never offer a TLS session, so every connection is a
 * full handshake (see docs/benchmarks.md and the benchmarking notes: plain wrk
 * with `Connection: close` measures RESUMED handshakes).
 *
 * wrk keeps one SSL object per connection slot and calls SSL_shutdown + SSL_clear
 * when it reconnects; SSL_clear keeps the session, so the next ClientHello
 * offers it. We drop it right after SSL_clear, and make any explicit
 * SSL_set_session(s, sess) a no-op. The harness checks on the server side
 * (X-TLS-Resumed) that nothing resumed.
 *
 * Build: gcc -shared -fPIC -O2 -o noresume.so noresume.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>

typedef struct ssl_st SSL;
typedef struct ssl_session_st SSL_SESSION;

typedef int (*set_session_fn)(SSL *, SSL_SESSION *);
typedef int (*clear_fn)(SSL *);

static set_session_fn real_set_session(void)
{
    static set_session_fn fn;
    if (fn == NULL)
        fn = (set_session_fn)dlsym(RTLD_NEXT, "SSL_set_session");
    return fn;
}

int SSL_set_session(SSL *s, SSL_SESSION *session)
{
    if (session == NULL)
        return real_set_session()(s, NULL);
    return 1; /* pretend it worked; offer nothing */
}

int SSL_clear(SSL *s)
{
    static clear_fn real_clear;
    if (real_clear == NULL)
        real_clear = (clear_fn)dlsym(RTLD_NEXT, "SSL_clear");
    int rc = real_clear(s);
    real_set_session()(s, NULL); /* forget the session SSL_clear kept */
    return rc;
}
