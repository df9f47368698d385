#!/usr/bin/env bash
# Builds the container image from ./Dockerfile with buildah and runs it with podman the way the
# charts run it (read-only root, uid 65532, every capability dropped, no privilege escalation)
# against the demo cluster, then probes /readyz, /livez and /metrics on port 8000, the console
# and /health_check on the public port (under a base path), runs the image's HEALTHCHECK
# command inside the container, and stops it with SIGTERM.
#
# Offline: no registry is reachable, so neither base image can be pulled, and neither
# github.com nor the npm registry for the frontend. The runtime base is assembled from this
# Debian 12 host's own glibc, libgcc and CA bundle (what gcr.io/distroless/cc-debian12 ships)
# and passed as RUNTIME_IMAGE; the binary is the debug build CI already has (the image's
# behaviour, not its size, is under test; set HAMI_WEBUI_BINARY=target/release/hami-webui-server
# to package a release build), packaged through BINARY_FROM=prebuilt (the build stage, which
# needs the Rust image, is skipped); the console is a small test site (index.html with the
# base-path marker, a hashed asset) packaged through FRONTEND_FROM=prebuilt (the node stage is
# skipped). Everything else is the Dockerfile's own runtime stage. The image is built in
# Docker format, which keeps HEALTHCHECK (OCI image configs have no such field).
#
# Needs: buildah, podman, runc (Debian packages), root, vfs storage. crun refuses this
# machine's hybrid cgroups, so podman runs with runc.
set -euo pipefail
cd "$(dirname "$0")/../.."

image=localhost/hami-webui-server:ci-smoke
base=localhost/hami-webui-runtime-base:ci-smoke
store=(--storage-driver vfs)
podman_run=(podman "${store[@]}" --runtime runc)
work=$(mktemp -d)
cid=""
mapfile -t before < <(buildah "${store[@]}" containers -q 2>/dev/null | sort)
cleanup() {
  if [ -n "$cid" ]; then "${podman_run[@]}" rm -f "$cid" >/dev/null 2>&1 || true; fi
  podman "${store[@]}" rmi -f "$image" "$base" >/dev/null 2>&1 || true
  # Buildah keeps a working container for the instruction-less `binary` stage; remove the
  # ones this run created, then the untagged stage images they held.
  for c in $(buildah "${store[@]}" containers -q 2>/dev/null | sort | comm -13 <(printf '%s\n' "${before[@]}") -); do
    buildah "${store[@]}" rm "$c" >/dev/null 2>&1 || true
  done
  podman "${store[@]}" image prune -f >/dev/null 2>&1 || true
  rm -rf "$work" target/image target/image-public
}
trap cleanup EXIT
fail() { echo "image smoke: FAIL: $*" >&2; exit 1; }

bin=${HAMI_WEBUI_BINARY:-target/debug/hami-webui-server}
[ -x "$bin" ] || cargo build --locked

# The prebuilt tree the Dockerfile's `prebuilt` stage copies: the binary (stripped, as the
# build stage's CARGO_PROFILE_RELEASE_STRIP does) and the 1.x path as a symlink.
rm -rf target/image && mkdir -p target/image
strip -o target/image/hami-webui "$bin"
ln -s hami-webui target/image/server

# The prebuilt console the `frontend-prebuilt` stage copies to /apps/public: what a Vite build
# of HAMi-WebUI looks like (index.html with the marker the server rewrites, relative hashed
# assets under static/). World-readable, as the frontend stage leaves the real one.
rm -rf target/image-public && mkdir -p target/image-public/static
cat >target/image-public/index.html <<'HTML'
<!doctype html>
<html>
  <head>
    <base data-hami-webui-base href="/">
    <title>HAMi</title>
    <script type="module" src="./static/index-Cx9smoke.js"></script>
  </head>
  <body><div id="app"></div></body>
</html>
HTML
printf 'console.log("hami-webui image smoke");\n' >target/image-public/static/index-Cx9smoke.js
chmod -R u=rwX,go=rX target/image-public

# Runtime base: the libraries the binary links, the dynamic loader, CA certificates, and the
# nonroot user distroless defines.
root="$work/rootfs"
mkdir -p "$root/etc/ssl/certs" "$root/tmp"
chmod 1777 "$root/tmp"
for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
printf 'FROM scratch\nCOPY rootfs/ /\n' >"$work/Containerfile"
buildah "${store[@]}" bud -q -f "$work/Containerfile" -t "$base" "$work" >/dev/null

echo "== image smoke: buildah bud (RUNTIME_IMAGE=$base, BINARY_FROM=prebuilt, FRONTEND_FROM=prebuilt)"
buildah "${store[@]}" bud -q --layers=false --format docker \
  --build-arg BINARY_FROM=prebuilt --build-arg FRONTEND_FROM=prebuilt --build-arg RUNTIME_IMAGE="$base" \
  --build-arg HAMI_WEBUI_REVISION="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)" \
  -t "$image" . >/dev/null

inspect() { podman "${store[@]}" image inspect --format "$1" "$image"; }
[ "$(inspect '{{.Config.User}}')" = "65532:65532" ] || fail "USER is $(inspect '{{.Config.User}}')"
[ "$(inspect '{{json .Config.Entrypoint}}')" = '["/apps/hami-webui"]' ] || fail "ENTRYPOINT $(inspect '{{json .Config.Entrypoint}}')"
[ "$(inspect '{{json .Config.Cmd}}')" = '["--conf","/apps/config/config.yaml"]' ] || fail "CMD $(inspect '{{json .Config.Cmd}}')"
inspect '{{json .Config.ExposedPorts}}' | grep -q '8000/tcp' || fail "port 8000 not exposed"
inspect '{{json .Config.ExposedPorts}}' | grep -q '3000/tcp' || fail "port 3000 not exposed"
health=$(inspect '{{json .Config.Healthcheck.Test}}')
[ "$health" = '["CMD","/apps/hami-webui","--healthcheck"]' ] || fail "HEALTHCHECK $health"
size=$(inspect '{{.Size}}')
echo "image smoke: image size $((size / 1024 / 1024)) MiB ($size bytes; host-assembled base)"

# This machine refuses to raise rlimits to the runtime's defaults; ask for no more than the
# shell has for open files, and a modest process limit.
nofile=$(ulimit -Hn); [ "$nofile" = unlimited ] && nofile=65536
hardened=(--network host --read-only --cap-drop ALL --security-opt no-new-privileges
  --ulimit "nofile=$nofile:$nofile" --ulimit "nproc=4096:4096")
# Podman wants a systemd timer for the image's HEALTHCHECK and there is no systemd here: it
# logs that (even with --health-interval disable, in podman 4.3) and carries on. The check is
# run by hand below with `podman healthcheck run`; drop that noise from the output.
no_timer_noise() { "$@" 2> >(grep -v 'unable to get systemd connection' >&2); }

# The 1.x chart's command: /apps/server --conf /apps/config/config.yaml (here: --version).
version=$("${podman_run[@]}" run --rm "${hardened[@]}" --no-healthcheck --entrypoint /apps/server "$image" --version) \
  || fail "/apps/server --version failed"
echo "image smoke: /apps/server --version: $version"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
web_port=$(free_port)
base_path=/gpu-ui/
cid=$(no_timer_noise "${podman_run[@]}" run -d "${hardened[@]}" \
  -e "HAMI_WEBUI__SERVER__HTTP__ADDR=127.0.0.1:$port" \
  -e "HAMI_WEBUI_LISTEN_ADDRESS=127.0.0.1:$web_port" \
  -e "HAMI_WEBUI_BASE_PATH=$base_path" \
  -v "$PWD/examples/demo-cluster.json:/apps/demo/cluster.json:ro" \
  "$image" --conf /apps/config/config.yaml --snapshot /apps/demo/cluster.json)

status() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:${2:-$port}$1" || true; }
deadline=$((SECONDS + 60))
until [ "$(status /readyz)" = 200 ]; do
  if [ "$("${podman_run[@]}" inspect --format '{{.State.Running}}' "$cid")" != true ]; then
    "${podman_run[@]}" logs "$cid" >&2 || true
    fail "container exited before /readyz was 200"
  fi
  [ "$SECONDS" -lt "$deadline" ] || { "${podman_run[@]}" logs "$cid" >&2; fail "/readyz not 200 within 60 s"; }
  sleep 0.2
done
echo "image smoke: /readyz 200"
[ "$(status /livez)" = 200 ] || fail "/livez not 200"
# The first refresh cycle publishes shortly after readiness (its store queries fail fast here).
deadline=$((SECONDS + 30))
until curl -s --max-time 5 "http://127.0.0.1:$port/metrics" | grep -q '^hami_'; do
  [ "$SECONDS" -lt "$deadline" ] || { "${podman_run[@]}" logs "$cid" >&2; fail "/metrics has no hami_ series within 30 s"; }
  sleep 0.2
done
echo "image smoke: /livez 200, /metrics serves hami_ series"

# The public port: /health_check at the root, the console from /apps/public under the base
# path with its base tag rewritten, its hashed asset, and the internal routes absent.
[ "$(status /health_check "$web_port")" = 200 ] || { "${podman_run[@]}" logs "$cid" >&2; fail "/health_check not 200 on the public port"; }
page=$(curl -s --max-time 5 "http://127.0.0.1:$web_port$base_path") || fail "no console at $base_path"
grep -q "<base data-hami-webui-base href=\"$base_path\">" <<<"$page" || fail "base tag not rewritten to $base_path: $page"
[ "$(status "${base_path}static/index-Cx9smoke.js" "$web_port")" = 200 ] || fail "hashed asset not served"
[ "$(status "${base_path}admin/vgpu/node/admin" "$web_port")" = 200 ] || fail "history route not served"
[ "$(status /metrics "$web_port")" = 404 ] || fail "/metrics exposed on the public port"
echo "image smoke: public port: /health_check 200, console at $base_path (base tag rewritten), asset and history route 200, /metrics 404"

# The image's HEALTHCHECK, as the engine runs it, then the same command by hand, inside the
# running container (its environment, its WORKDIR).
"${podman_run[@]}" healthcheck run "$cid" || fail "podman healthcheck run: the image's HEALTHCHECK failed"
"${podman_run[@]}" exec "$cid" /apps/hami-webui --healthcheck || fail "--healthcheck inside the container exited $?"
if "${podman_run[@]}" exec "$cid" /apps/hami-webui --healthcheck --healthcheck-url "http://127.0.0.1:$port/nope" 2>/dev/null; then
  fail "--healthcheck passed against a 404"
fi
echo "image smoke: HEALTHCHECK healthy; /apps/hami-webui --healthcheck exits 0 in the container (1 against a 404)"

no_timer_noise "${podman_run[@]}" stop -t 30 "$cid" >/dev/null
code=$("${podman_run[@]}" inspect --format '{{.State.ExitCode}}' "$cid")
[ "$code" = 0 ] || { "${podman_run[@]}" logs "$cid" >&2; fail "exit status $code after SIGTERM"; }
echo "image smoke: stopped by SIGTERM, exit 0"
echo "image smoke: ok"
