/* The system OpenSSL (libssl, libcrypto) as seen from Swift.
 * Function-like macros are not visible to Swift; each one the project needs gets a
 * static inline wrapper here, named with an mt_ prefix. */
#ifndef MINITORRENT_COPENSSL_SHIM_H
#define MINITORRENT_COPENSSL_SHIM_H

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

/* Compound constant macros, copied where Swift can see them. */
static const uint64_t mt_SSL_OP_NO_TICKET = SSL_OP_NO_TICKET;

static inline int mt_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_min_proto_version(ctx, version);
}

static inline int mt_SSL_CTX_set_max_proto_version(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_max_proto_version(ctx, version);
}

static inline long mt_SSL_CTX_set_session_cache_mode(SSL_CTX *ctx, long mode) {
    return SSL_CTX_set_session_cache_mode(ctx, mode);
}

/* An empty memory BIO should ask for more data (retry), not report end of file. */
static inline void mt_BIO_set_mem_eof_return(BIO *bio, int value) {
    (void)BIO_set_mem_eof_return(bio, value);
}

#endif
