#!/usr/bin/env bash
# Checks the images images/build.sh built (this machine's architecture), each check asserting
# one outcome and failing loudly:
#   1. image config: entrypoint = the binary, user = 65532:65532
#   2. rootfs: exactly the binary and the CA bundle (no shell, no package manager), binary static
#   3. the binary runs from the unpacked rootfs (chroot, as 65532): `--version` = the crate's
#   4. the proxy from the rootfs serves /healthz on loopback
#   5. DNS as in a pod: in a network namespace of its own, dnsmasq answers the cluster name
#      vllm.inference.svc.cluster.local, the mock vLLM listens behind it, the rootfs gets
#      kubelet's resolv.conf (search list, ndots:5), and the image's proxy with
#      `--upstream http://vllm.inference:8000/v1` (short name: found through the search list)
#      answers POST /v1/messages 200 with the mock's text
#   6. a TLS backend (https://vllm.inference:8443, certificate from a private CA) is trusted
#      once that CA is in the image's CA bundle (what a user mounts)
# and prints the sizes. Needs root (buildah mount, chroot, ip netns), buildah, dnsmasq, curl,
# openssl, python3, and the mock vLLM (MOCK_VLLM, default target/debug/mock-vllm; built when
# absent).
# Where network namespaces or chroot are not allowed, the checks that need them say SKIPPED
# and why; CHECK_REQUIRE_ALL=1 turns a skip into a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=${IMAGE_PREFIX:-ghcr.io/switchyard}
tag=${TAG:-$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' charts/switchyard/Chart.yaml)}
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
mock=${MOCK_VLLM:-target/debug/mock-vllm}
case "$(uname -m)" in x86_64) arch=amd64 ;; aarch64 | arm64) arch=arm64 ;; *) arch=$(uname -m) ;; esac
export STORAGE_DRIVER=vfs

fail() { echo "check.sh: FAIL: $*" >&2; exit 1; }
ok() { echo "check.sh: ok: $*"; }
skip() {
  echo "check.sh: SKIPPED: $*" >&2
  [ "${CHECK_REQUIRE_ALL:-0}" = 1 ] && fail "a check was skipped and CHECK_REQUIRE_ALL=1"
  return 0
}

work=$(mktemp -d /tmp/switchyard-image-check.XXXXXX)
chmod 0755 "$work"
netns=""
pids=()
containers=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "$netns" ]; then ip netns del "$netns" 2>/dev/null || true; fi
  for p in "${containers[@]}"; do buildah rm "$p" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Polls URL (with an optional command prefix, e.g. `ip netns exec NS`) until it answers 200,
# for at most $2 seconds; fails naming the log to read otherwise.
wait_http() {
  local url=$1 secs=$2 log=$3
  shift 3
  local deadline=$((SECONDS + secs))
  until "$@" curl -fsS --max-time 2 -o /dev/null "$url" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "--- $log" >&2
      tail -n 30 "$log" >&2 || true
      fail "$url did not answer within ${secs}s"
    fi
    sleep 0.2
  done
}

# Unused TCP port on the host's loopback.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

can_chroot=1
if ! chroot / true 2>/dev/null; then
  can_chroot=0
  echo "check.sh: note: chroot is not allowed here; binaries run from the rootfs path instead"
fi
chroot_bin=$(command -v chroot)
# Runs the image's binary as in the image, for at most $1 seconds: chroot into the rootfs $2,
# user 65532, empty environment. Call it in a subshell: $(...) or &.
in_image() {
  local secs=$1 rootfs=$2 bin=$3
  shift 3
  # exec: started with `&`, the function is a subshell, and $! must be timeout's pid (timeout
  # passes a TERM on to the binary).
  if [ "$can_chroot" = 1 ]; then
    exec timeout "$secs" env -i "$chroot_bin" --userspec=65532:65532 "$rootfs" "$bin" "$@"
  else
    exec timeout "$secs" env -i "$rootfs$bin" "$@"
  fi
}

for target in proxy operator; do
  image="$prefix/switchyard-$target:$tag"
  bin="/switchyard-$target"
  echo "check.sh: --- $image"
  buildah inspect --type image "$image" >/dev/null 2>&1 || fail "no image $image; run images/build.sh first"

  # 1. Image config.
  config=$(buildah inspect --type image "$image")
  field() { printf '%s' "$config" | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["OCIv1"]["config"].get(sys.argv[1])))' "$1"; }
  entrypoint=$(field Entrypoint)
  [ "$entrypoint" = "[\"$bin\"]" ] || fail "$image entrypoint is $entrypoint, expected [\"$bin\"]"
  ok "entrypoint $entrypoint"
  user=$(field User)
  [ "$user" = '"65532:65532"' ] || fail "$image user is $user, expected \"65532:65532\""
  ok "user $user"
  cmd=$(field Cmd)
  case "$cmd" in null | "[]") ;; *) fail "$image has a Cmd ($cmd); the chart passes args only" ;; esac
  platform=$(printf '%s' "$config" | python3 -c 'import json,sys; c=json.load(sys.stdin)["OCIv1"]; print(c["os"] + "/" + c["architecture"])')
  [ "$platform" = "linux/$arch" ] || fail "$image is for $platform, expected linux/$arch"
  ok "platform $platform"

  # 2. The rootfs, copied out of a working container (buildah mount needs root).
  ctr=$(buildah from --pull=never --quiet "$image")
  containers+=("$ctr")
  mnt=$(buildah mount "$ctr")
  rootfs="$work/rootfs-$target"
  cp -a "$mnt" "$rootfs"
  buildah umount "$ctr" >/dev/null
  files=$(cd "$rootfs" && find . -mindepth 1 ! -type d | sed 's|^\./||' | sort | tr '\n' ' ')
  expected="etc/ssl/certs/ca-certificates.crt switchyard-$target "
  [ "$files" = "$expected" ] || fail "$image holds '$files', expected exactly '$expected'"
  [ ! -e "$rootfs/bin/sh" ] || fail "$image has /bin/sh"
  ok "rootfs: $files(no shell, no package manager)"
  file "$rootfs$bin" | grep -Eq 'static-pie linked|statically linked' \
    || fail "$bin is not static: $(file -b "$rootfs$bin")"
  [ "$(stat -c '%u:%a' "$rootfs$bin")" = "0:755" ] || fail "$bin is not root-owned 0755 (user 65532 must not be able to change it)"
  ok "$bin static, root-owned 0755"
  [ "$(grep -c 'BEGIN CERTIFICATE' "$rootfs/etc/ssl/certs/ca-certificates.crt")" -gt 50 ] \
    || fail "the CA bundle holds too few certificates"

  # What every OCI runtime adds to a container (runtime-spec config-linux.md, "Default
  # Devices"), needed here: getrandom 0.3/0.4 (uuid, ahash) cannot find libc's getrandom()
  # through dlsym in a static binary and reads /dev/urandom instead.
  mkdir -m 0755 "$rootfs/dev"
  for dev in null:3 zero:5 full:7 random:8 urandom:9; do
    mknod -m 0666 "$rootfs/dev/${dev%:*}" c 1 "${dev#*:}"
  done

  # 3. The binary runs from the image.
  out=$(in_image 10 "$rootfs" "$bin" --version 2>&1) \
    || fail "$bin --version failed: $out"
  [ "$out" = "switchyard-$target $version" ] || fail "$bin --version said '$out', expected 'switchyard-$target $version'"
  ok "$bin --version: $out"
done

proxy_rootfs="$work/rootfs-proxy"

# 4. /healthz on the host's loopback.
api=$(free_port)
admin=$(free_port)
log="$work/proxy-healthz.log"
in_image 60 "$proxy_rootfs" /switchyard-proxy \
  --upstream http://127.0.0.1:9/v1 --served-model m --context-window 8192 \
  --listen "127.0.0.1:$api" --admin-listen "127.0.0.1:$admin" >"$log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$admin/healthz" 20 "$log"
body=$(curl -fsS --max-time 5 "http://127.0.0.1:$admin/healthz")
[ "$body" = "ok" ] || fail "/healthz said '$body', expected 'ok'"
ok "image proxy (user 65532) serves /healthz on 127.0.0.1:$admin: $body"
kill "${pids[-1]}"
deadline=$((SECONDS + 15))
while kill -0 "${pids[-1]}" 2>/dev/null; do
  [ "$SECONDS" -lt "$deadline" ] || fail "the image proxy did not stop within 15s of SIGTERM"
  sleep 0.2
done
ok "image proxy stopped on SIGTERM"

# Starts the image's proxy (chroot, user 65532) in network namespace $1 with --upstream $2,
# API on 127.0.0.1:$3, admin on $3+1, and waits for /healthz.
start_image_proxy() {
  local ns=$1 upstream=$2 port=$3 log=$4
  ip netns exec "$ns" timeout 120 env -i "$chroot_bin" --userspec=65532:65532 "$proxy_rootfs" \
    /switchyard-proxy --upstream "$upstream" \
    --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$((port + 1))" >"$log" 2>&1 &
  pids+=($!)
  wait_http "http://127.0.0.1:$((port + 1))/healthz" 20 "$log" ip netns exec "$ns"
}

# POST /v1/messages to the proxy on 127.0.0.1:$2 in namespace $1; asserts 200 and the mock's
# text, prints the text.
post_messages() {
  local ns=$1 port=$2 log=$3 resp status text
  resp=$(ip netns exec "$ns" curl -sS --max-time 60 -w '\n%{http_code}' "http://127.0.0.1:$port/v1/messages" \
    -H 'content-type: application/json' -H 'anthropic-version: 2023-06-01' \
    -d '{"model":"qwen3-coder","max_tokens":64,"messages":[{"role":"user","content":"Hello"}]}') \
    || { tail -n 30 "$log" >&2; fail "POST /v1/messages through the image proxy failed"; }
  status=${resp##*$'\n'}
  resp=${resp%$'\n'*}
  [ "$status" = 200 ] || { tail -n 30 "$log" >&2; fail "POST /v1/messages (port $port): HTTP $status: $resp"; }
  text=$(printf '%s' "$resp" | python3 -c 'import json,sys; print("".join(b.get("text","") for b in json.load(sys.stdin)["content"]))')
  [ "$text" = "Hello from mock vLLM." ] || fail "POST /v1/messages answered '$text', expected the mock's 'Hello from mock vLLM.'"
  printf '%s' "$text"
}

# 5. Cluster DNS in a network namespace (and 6. a TLS backend with a private CA).
dns_check() {
  if [ "$can_chroot" != 1 ]; then
    skip "DNS check: chroot is not allowed here, so the image's /etc/resolv.conf cannot be the one the proxy reads"
    return
  fi
  if ! command -v dnsmasq >/dev/null; then
    skip "DNS check: dnsmasq is not installed (apt-get install dnsmasq)"
    return
  fi
  local ns="switchyard-img-$$"
  if ! ip netns add "$ns" 2>"$work/netns.err"; then
    skip "DNS check: cannot create a network namespace ($(cat "$work/netns.err"))"
    return
  fi
  netns=$ns
  ip -n "$ns" link set lo up
  if [ ! -x "$mock" ]; then
    echo "check.sh: building the mock vLLM ($mock)"
    cargo build -q -p switchyard-e2e --bin mock-vllm
  fi
  local inns=(ip netns exec "$ns")

  # A cluster DNS server: one Service name; everything else under cluster.local is NXDOMAIN
  # (as CoreDNS answers), nothing is forwarded anywhere.
  "${inns[@]}" dnsmasq --keep-in-foreground --no-resolv --no-hosts --bind-interfaces \
    --listen-address=127.0.0.1 --port=53 --user=root --pid-file= \
    --host-record=vllm.inference.svc.cluster.local,127.0.0.1 --local=/cluster.local/ \
    --log-queries --log-facility=- >"$work/dnsmasq.log" 2>&1 &
  pids+=($!)
  "${inns[@]}" "$mock" --listen 127.0.0.1:8000 >"$work/mock.log" 2>&1 &
  pids+=($!)

  # What kubelet writes for a pod in namespace `default` (ClusterFirst).
  mkdir -p "$proxy_rootfs/etc"
  printf '%s\n' 'search default.svc.cluster.local svc.cluster.local cluster.local' \
    'nameserver 127.0.0.1' 'options ndots:5' >"$proxy_rootfs/etc/resolv.conf"

  wait_http http://127.0.0.1:8000/v1/models 30 "$work/mock.log" "${inns[@]}"
  local deadline=$((SECONDS + 10))
  until grep -q 'started, version' "$work/dnsmasq.log"; do
    [ "$SECONDS" -lt "$deadline" ] || { cat "$work/dnsmasq.log" >&2; fail "dnsmasq did not start"; }
    sleep 0.2
  done

  start_image_proxy "$ns" http://vllm.inference:8000/v1 4000 "$work/proxy-dns.log"
  local text
  text=$(post_messages "$ns" 4000 "$work/proxy-dns.log")
  # The short name went through the search list: the first suffix is NXDOMAIN, the second answers.
  grep -q 'query\[A\] vllm.inference.default.svc.cluster.local' "$work/dnsmasq.log" \
    || { cat "$work/dnsmasq.log" >&2; fail "the proxy did not use the resolv.conf search list"; }
  grep -q 'vllm.inference.svc.cluster.local is 127.0.0.1' "$work/dnsmasq.log" \
    || { cat "$work/dnsmasq.log" >&2; fail "dnsmasq did not answer vllm.inference.svc.cluster.local"; }
  echo "check.sh: the DNS server's log (the image proxy's first lookups):"
  grep -E 'query\[|config [a-z]' "$work/dnsmasq.log" | sed 's/^/    /' | head -n 8
  ok "image proxy resolved vllm.inference through the search list; POST /v1/messages -> 200 '$text'"

  # 6. A TLS backend behind a private CA (the mock behind a TLS forwarder with a certificate
  # for the Service name): trusted once the CA is in the image's bundle, as a user would mount
  # it over /etc/ssl/certs/ca-certificates.crt.
  if ! command -v openssl >/dev/null; then
    skip "private-CA TLS check: openssl is not installed"
    return
  fi
  local tls="$work/tls"
  mkdir -p "$tls"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=Switchyard check private CA" \
    -keyout "$tls/ca.key" -out "$tls/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=vllm.inference.svc.cluster.local" \
    -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
  # The names a Service certificate carries; the proxy checks the URL's (short) name.
  printf '%s\n' 'subjectAltName=DNS:vllm.inference,DNS:vllm.inference.svc,DNS:vllm.inference.svc.cluster.local' \
    'extendedKeyUsage=serverAuth' >"$tls/ext"
  openssl x509 -req -days 2 -in "$tls/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" \
    -CAcreateserial -extfile "$tls/ext" -out "$tls/server.crt" 2>/dev/null
  cat >"$tls/forward.py" <<'PY'
import asyncio, ssl, sys
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
async def pipe(r, w):
    try:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        w.close()
async def handle(r, w):
    ur, uw = await asyncio.open_connection("127.0.0.1", 8000)
    await asyncio.gather(pipe(r, uw), pipe(ur, w))
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 8443, ssl=ctx)
    print("listening", flush=True)
    async with server:
        await server.serve_forever()
asyncio.run(main())
PY
  "${inns[@]}" timeout 120 python3 "$tls/forward.py" "$tls/server.crt" "$tls/server.key" >"$work/forward.log" 2>&1 &
  pids+=($!)
  local deadline=$((SECONDS + 10))
  until grep -q listening "$work/forward.log"; do
    [ "$SECONDS" -lt "$deadline" ] || { cat "$work/forward.log" >&2; fail "the TLS forwarder did not start"; }
    sleep 0.2
  done
  # Control: without the CA in the bundle the same backend is refused.
  start_image_proxy "$ns" https://vllm.inference:8443/v1 4200 "$work/proxy-tls-untrusted.log"
  local status
  status=$("${inns[@]}" curl -sS --max-time 60 -o "$work/untrusted.json" -w '%{http_code}' http://127.0.0.1:4200/v1/messages \
    -H 'content-type: application/json' \
    -d '{"model":"qwen3-coder","max_tokens":64,"messages":[{"role":"user","content":"Hello"}]}')
  [ "$status" != 200 ] || fail "the image proxy trusted a private CA that is not in its bundle"
  # The client is told why: rustls' "invalid peer certificate: UnknownIssuer".
  grep -q 'UnknownIssuer' "$work/untrusted.json" \
    || fail "the refusal does not name the certificate problem: $(cat "$work/untrusted.json")"
  ok "control: the private CA's backend is refused (HTTP $status, $(grep -o 'invalid peer certificate: [A-Za-z]*' "$work/untrusted.json" | head -1)) while the CA is not in the bundle"
  cat "$tls/ca.crt" >>"$proxy_rootfs/etc/ssl/certs/ca-certificates.crt"
  start_image_proxy "$ns" https://vllm.inference:8443/v1 4100 "$work/proxy-tls.log"
  text=$(post_messages "$ns" 4100 "$work/proxy-tls.log")
  ok "image proxy -> https://vllm.inference:8443 (private CA in the bundle): POST /v1/messages -> 200 '$text'"
}
dns_check

# Sizes.
echo "check.sh: --- sizes"
buildah images --filter "reference=$prefix/switchyard-*:$tag" --format '{{.Name}}:{{.Tag}} {{.Size}}'
for target in proxy operator; do
  rootfs="$work/rootfs-$target"
  printf 'check.sh: switchyard-%s: binary %s bytes, layer %s bytes uncompressed, ~%s bytes gzip\n' \
    "$target" "$(stat -c %s "$rootfs/switchyard-$target")" \
    "$(tar -C "$rootfs" -cf - switchyard-$target etc/ssl/certs/ca-certificates.crt | wc -c)" \
    "$(tar -C "$rootfs" -cf - switchyard-$target etc/ssl/certs/ca-certificates.crt | gzip -6 | wc -c)"
done
echo "check.sh: all image checks passed"
