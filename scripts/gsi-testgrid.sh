#!/usr/bin/env bash
# gsi-testgrid.sh DIR -- a throwaway certificate authority and credentials for GSI tests.
#   DIR/certdir        the CA by subject hash (<hash>.0) with a signing policy and a CRL (<hash>.r0)
#   DIR/host.pem/.key  host credential, CN=localhost
#   DIR/proxy          a proxy of "Test User" (mapped to `tester` in DIR/gridmap)
#   DIR/limited-proxy  a limited proxy of "Test User"
#   DIR/stranger-proxy a proxy of a user the CA signed but the grid-mapfile does not list
#   DIR/revoked-proxy  a proxy of a user whose certificate the CRL revokes
#   DIR/rogue-certdir  a CA directory that trusts none of the above
#   DIR/expired-proxy  an expired certificate with its key, used as a proxy
#   DIR/globus-gridmap the user mapped to a real account (nobody as root), for globus-gridftp-server
# Needs openssl and grid-proxy-init (globus-proxy-utils).
set -euo pipefail
G=$(realpath -m "${1:?DIR}")
mkdir -p "$G/certdir" "$G/rogue-certdir"
cd "$G"
subj=/O=Grid/OU=RingmoverTest

openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 3650 \
    -subj "$subj/CN=Test CA" 2>/dev/null
hash=$(openssl x509 -hash -noout -in ca.pem)
cp ca.pem "certdir/$hash.0"
cat > "certdir/$hash.signing_policy" <<POLICY
access_id_CA   X509   '$subj/CN=Test CA'
pos_rights     globus CA:sign
cond_subjects  globus '"$subj/*"'
POLICY

issue() { # NAME SUBJECT [EXTRA-EXTENSION]
    openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
    {
        echo "basicConstraints=CA:FALSE"
        echo "keyUsage=digitalSignature,keyEncipherment,dataEncipherment"
        echo "extendedKeyUsage=serverAuth,clientAuth"
        [ -n "${3:-}" ] && echo "$3"
    } > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$1.pem" \
        -days 3650 -extfile "$1.ext" 2>/dev/null
    chmod 600 "$1.key"
}
issue host "$subj/CN=localhost" "subjectAltName=DNS:localhost,IP:127.0.0.1"
issue user "$subj/CN=Test User"
issue stranger "$subj/CN=Stranger"
issue revoked "$subj/CN=Revoked User"

proxy() { X509_CERT_DIR="$G/certdir" grid-proxy-init -q -cert "$1.pem" -key "$1.key" -out "$2" -valid 100:0; }
proxy user proxy
proxy stranger stranger-proxy
X509_CERT_DIR="$G/certdir" grid-proxy-init -q -limited -cert user.pem -key user.key -out limited-proxy -valid 100:0
proxy revoked revoked-proxy

# Revoke one user; the CRL sits beside the CA as OpenSSL's hash lookup expects.
cat > ca.cnf <<CNF
[ ca ]
default_ca = test
[ test ]
database = $G/index.txt
crlnumber = $G/crlnumber
default_md = sha256
default_crl_days = 3650
CNF
: > index.txt
echo 01 > crlnumber
openssl ca -config ca.cnf -keyfile ca.key -cert ca.pem -revoke revoked.pem 2>/dev/null
openssl ca -config ca.cnf -keyfile ca.key -cert ca.pem -gencrl -out "certdir/$hash.r0" 2>/dev/null

openssl req -x509 -newkey rsa:2048 -nodes -keyout rogue.key -out rogue.pem -days 3650 \
    -subj "/O=Elsewhere/CN=Rogue CA" 2>/dev/null
cp rogue.pem "rogue-certdir/$(openssl x509 -hash -noout -in rogue.pem).0"

echo "\"$subj/CN=Test User\" tester" > gridmap
echo "\"$subj/CN=Revoked User\" tester" >> gridmap
account=$(id -un); [ "$(id -u)" -eq 0 ] && account=nobody
echo "\"$subj/CN=Test User\" $account" > globus-gridmap

# A certificate that ran out in 2020, signed by the same CA.
mkdir -p newcerts
openssl rand -hex 16 > ca-serial
cat >> ca.cnf <<CNF
new_certs_dir = $G/newcerts
serial = $G/ca-serial
preserve = yes
policy = anything
[ anything ]
organizationName = optional
organizationalUnitName = optional
commonName = supplied
CNF
openssl req -newkey rsa:2048 -nodes -keyout expired.key -out expired.csr -subj "$subj/CN=Expired User" 2>/dev/null
openssl ca -batch -config ca.cnf -keyfile ca.key -cert ca.pem -in expired.csr -out expired.pem \
    -startdate 20200101000000Z -enddate 20200102000000Z -notext 2>/dev/null
cat expired.pem expired.key > expired-proxy
chmod 600 expired-proxy
