#!/bin/sh
# SPDX-License-Identifier: MIT
# Test certificates for the TLS tests (tests/integration/test_tls.c) and for
# trying the samples by hand: ECDSA P-256, valid for 100 years. The PEMs are
# checked in; run this again only to replace them.
#   ca.pem            the test CA (ca.key signs the others; not checked in)
#   server.pem/.key   localhost, 127.0.0.1, ::1
#   second.pem/.key   second.test (the SNI test's second certificate)
#   client.pem/.key   a client certificate (CN=pc-test-client)
#   other-ca.pem      an unrelated CA (verification must fail with it)
#   rsa.key           an RSA key that belongs to no certificate (a key of
#                     another type than the certificate's must be refused)
set -eu
cd "$(dirname "$0")"
days=36500
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ca() { # name cn
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -sha256 -days $days -subj "/CN=$2" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -out "$1.pem"
}
leaf() { # name cn san eku
  key "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
  printf 'subjectAltName=%s\nextendedKeyUsage=%s\nbasicConstraints=CA:FALSE\n' "$3" "$4" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -sha256 -days $days \
    -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
ca ca "portcullis test CA"
leaf server localhost "DNS:localhost,IP:127.0.0.1,IP:::1" serverAuth
leaf second second.test "DNS:second.test" serverAuth
leaf client pc-test-client "DNS:pc-test-client" clientAuth
ca other-ca "some other CA"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.key 2>/dev/null
rm -f ca.key ca.srl other-ca.key
