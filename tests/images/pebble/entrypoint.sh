#!/bin/sh
# Pebble's own HTTPS listener (the ACME directory) needs a certificate for the names its
# clients use: made at start, for $PEBBLE_NAMES (default: the container's host name), signed
# by a CA made here too and left in /pebble-ca/ca.pem for the clients to trust. (The CA that
# signs the certificates pebble *issues* is another one, also made at start: /roots/0 on the
# management port.) HTTP-01 validation connects to port 80 of each domain, as resolved by
# the container's resolver (/etc/hosts: `docker run --add-host <domain>:<nginx address>`).
set -eu
names=${PEBBLE_NAMES:-$(hostname)}
cd /pebble-ca
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
  -subj "/CN=aiia test pebble listener CA" -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" -keyout ca-key.pem -out ca.pem 2>/dev/null
# shellcheck disable=SC2086 # one DNS: entry per name: $names is split on purpose
san=$(printf "DNS:%s," $names localhost)
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -subj "/CN=$(echo "$names" | cut -d' ' -f1)" -keyout listener-key.pem -out listener.csr 2>/dev/null
printf 'subjectAltName=%sIP:127.0.0.1\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' \
  "$san" > listener.ext
openssl x509 -req -in listener.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 30 \
  -extfile listener.ext -out listener.pem 2>/dev/null
rm -f listener.csr listener.ext ca.srl ca-key.pem
chmod 0644 ca.pem
exec pebble -config /etc/pebble/pebble-config.json -strict=false "$@"
