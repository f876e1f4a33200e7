/* The system OpenSSL (libssl, libcrypto) as seen from Swift.
 * Function-like macros are not visible to Swift; each one the project needs gets a
 * static inline wrapper here, named with an mt_ prefix. */
#ifndef MINITORRENT_COPENSSL_SHIM_H
#define MINITORRENT_COPENSSL_SHIM_H

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#endif
