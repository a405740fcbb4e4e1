#!/usr/bin/env bash
# Private CA for the kiemdich MQTT broker and gate devices (openssl only).
# CA riêng cho broker MQTT và thiết bị cổng.
#
#   make-ca.sh init   DIR             CA key (0600) and certificate: DIR/ca.key, DIR/ca.crt
#   make-ca.sh broker DIR HOSTNAME    broker server cert, SAN = HOSTNAME: DIR/server.{key,crt}
#   make-ca.sh device DIR DEVICE_ID   device client cert, CN = DEVICE_ID: DIR/devices/ID.{key,crt}
#
# Idempotent: an existing key or certificate is kept (delete it to re-issue). Keys are
# EC P-256, certificates SHA-256. Keep DIR/ca.key offline; only ca.crt goes to the devices.
set -euo pipefail

CA_DAYS=${CA_DAYS:-3650}
CERT_DAYS=${CERT_DAYS:-825}
ID_PATTERN='^[a-z0-9][a-z0-9_-]{0,63}$'   # contract/topics.py DEVICE_ID_PATTERN

usage() {
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

die() { echo "make-ca.sh: $*" >&2; exit 1; }

new_key() {   # new_key PATH: an EC key readable by its owner only
    local key=$1
    (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$key")
    chmod 0600 "$key"
}

need_ca() {
    [[ -s $1/ca.key && -s $1/ca.crt ]] || die "no CA in $1 (run: make-ca.sh init $1)"
}

# sign DIR KEY CRT SUBJECT EXTFILE: a certificate for KEY signed by the CA in DIR
sign() {
    local dir=$1 key=$2 crt=$3 subject=$4 ext=$5 csr=$WORK/csr
    openssl req -new -key "$key" -subj "$subject" -out "$csr"
    openssl x509 -req -in "$csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
        -CAcreateserial -CAserial "$dir/ca.srl" -days "$CERT_DAYS" -sha256 \
        -extfile "$ext" -out "$crt" 2>/dev/null
    chmod 0644 "$crt"
}

cmd_init() {
    local dir=$1
    mkdir -p "$dir"
    chmod 0700 "$dir"
    if [[ -s $dir/ca.key ]]; then
        echo "CA key exists, kept: $dir/ca.key"
    else
        new_key "$dir/ca.key"
    fi
    chmod 0600 "$dir/ca.key"
    if [[ -s $dir/ca.crt ]]; then
        echo "CA certificate exists, kept: $dir/ca.crt"
    else
        openssl req -x509 -new -key "$dir/ca.key" -sha256 -days "$CA_DAYS" \
            -subj "/O=kiemdich/CN=kiemdich private CA" \
            -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" \
            -out "$dir/ca.crt"
        chmod 0644 "$dir/ca.crt"
        echo "CA: $dir/ca.crt (key $dir/ca.key, 0600: keep it offline)"
    fi
}

cmd_broker() {
    local dir=$1 host=$2 san ext
    need_ca "$dir"
    [[ $host =~ ^[A-Za-z0-9.-]+$|^[0-9a-fA-F:]+$ ]] || die "invalid hostname: $host"
    if [[ $host =~ ^[0-9.]+$ || $host == *:* ]]; then san="IP:$host"; else san="DNS:$host"; fi
    [[ -s $dir/server.key ]] || new_key "$dir/server.key"
    if [[ -s $dir/server.crt ]]; then
        echo "broker certificate exists, kept: $dir/server.crt"
        return
    fi
    ext=$WORK/ext
    printf '%s\n' "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth" "subjectAltName=$san" >"$ext"
    sign "$dir" "$dir/server.key" "$dir/server.crt" "/O=kiemdich/CN=$host" "$ext"
    echo "broker: $dir/server.crt ($san), key $dir/server.key"
}

cmd_device() {
    local dir=$1 id=$2 ext
    need_ca "$dir"
    [[ $id =~ $ID_PATTERN ]] || die "invalid device id: $id (must match $ID_PATTERN)"
    mkdir -p "$dir/devices"
    [[ -s $dir/devices/$id.key ]] || new_key "$dir/devices/$id.key"
    if [[ -s $dir/devices/$id.crt ]]; then
        echo "device certificate exists, kept: $dir/devices/$id.crt"
        return
    fi
    ext=$WORK/ext
    printf '%s\n' "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature" "extendedKeyUsage=clientAuth" >"$ext"
    sign "$dir" "$dir/devices/$id.key" "$dir/devices/$id.crt" "/O=kiemdich/CN=$id" "$ext"
    echo "device: $dir/devices/$id.crt (CN=$id), key $dir/devices/$id.key"
}

command -v openssl >/dev/null || die "openssl not found (apt-get install openssl)"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
case ${1:-} in
    init) [[ $# -eq 2 ]] || usage; cmd_init "$2" ;;
    broker) [[ $# -eq 3 ]] || usage; cmd_broker "$2" "$3" ;;
    device) [[ $# -eq 3 ]] || usage; cmd_device "$2" "$3" ;;
    *) usage ;;
esac
