/* The system GnuTLS as seen from Swift (only in builds with the GnuTLS trait). */
#ifndef MINITORRENT_CGNUTLS_SHIM_H
#define MINITORRENT_CGNUTLS_SHIM_H

#include <gnutls/gnutls.h>

#endif
