# hami-webui-server container image: the server and the HAMi-WebUI console it serves.
#
#   docker build --build-arg HAMI_WEBUI_REVISION=$(git rev-parse --short=12 HEAD) -t hami-webui-server .
#
# Layout (the contract with HAMi-WebUI's charts):
#   /apps/hami-webui           the server; the entrypoint, as in the HAMi-WebUI 2.0 image
#   /apps/server               the same binary (symlink), the 1.x backend image's path, which
#                              the 1.x chart runs as `/apps/server --conf /apps/config/config.yaml`
#   /apps/config/config.yaml   default configuration; charts mount their ConfigMap over /apps/config/
#   /apps/public/              the built HAMi-WebUI frontend, served on port 3000 (--static-dir)
# Runs as 65532:65532 and writes nothing, so a read-only root filesystem works. Everything
# under /apps is owned by root and world-readable: the server reads it, never writes it.
#
# The frontend: HAMi-WebUI's own sources at tag v2.0.0, built here in a node stage (not
# taken from upstream's image, so no foreign binary is carried). v2.0.0 is the release whose
# chart is 2.0.0: upstream's release PRs #277 and #281 set Chart version and appVersion to
# 2.0.0 and pin the image projecthami/hami-webui:v2.0.0, and its release tags are `v<appVersion>`
# (v1.0.1 ... v1.3.0). That image was built from commit d3c5a3eda072e804538d3502f1c822fa5ee7ed0f
# (PR #281); pass it as HAMI_WEBUI_FRONTEND_REF to build exactly those sources (the tag itself
# was not yet visible in any upstream snapshot available when this was written, while the
# 2.0.0 release was being published: if it is missing, build that commit). Upstream builds
# packages/web (package `hami-webui-web`) with Vite through pnpm (pnpm-lock.yaml, the version
# pinned by package.json's packageManager, via corepack); Vite writes the site to public/ at
# the repository root. The server compresses and caches the assets itself at start, so
# upstream's precompression step is not needed.
#
# Build arguments:
#   HAMI_WEBUI_REVISION      git revision reported by --version and hami_webui_build_info
#                            (the build context has no .git)
#   BUILD_IMAGE              Rust toolchain image of the build stage
#   NODE_IMAGE               Node.js image of the frontend stage
#   RUNTIME_IMAGE            base of the final image (glibc, CA certificates, time zones)
#   HAMI_WEBUI_FRONTEND_REF  upstream tag (or commit) whose frontend is built
#   BINARY_FROM              `build` (default) compiles from source; `prebuilt` takes an already
#                            built tree from target/image/ (hami-webui plus the server symlink)
#                            and skips the build stage, for offline smoke tests
#   FRONTEND_FROM            `build` (default) builds the frontend from upstream's sources
#                            (needs github.com and the npm registry); `prebuilt` takes an
#                            already built site from target/image-public/ (index.html at its
#                            top, world-readable) and skips the node stage, for offline tests

ARG BUILD_IMAGE=docker.io/library/rust:1.89-slim-bookworm
ARG NODE_IMAGE=docker.io/library/node:24-bookworm-slim
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
ARG BINARY_FROM=build
ARG FRONTEND_FROM=build

# ---- build: dependencies in their own layer, then the crate ---------------------------------
FROM ${BUILD_IMAGE} AS build
WORKDIR /src
# Symbols are not needed at run time; stripping halves the binary.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_TERM_COLOR=never

# Layer 1: every dependency, compiled against placeholder sources. This layer is reused until
# Cargo.toml, Cargo.lock or build.rs change.
COPY Cargo.toml Cargo.lock build.rs ./
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked \
 && rm -rf src

# Layer 2: the crate itself. `touch` makes sure cargo sees the real sources as newer than the
# placeholders whatever mtimes COPY gave them.
COPY src ./src
COPY config ./config
ARG HAMI_WEBUI_REVISION=unknown
RUN touch src/main.rs src/lib.rs \
 && HAMI_WEBUI_REVISION="${HAMI_WEBUI_REVISION}" cargo build --release --locked \
 && mkdir -p /out \
 && cp target/release/hami-webui-server /out/hami-webui \
 && ln -s hami-webui /out/server

# ---- prebuilt: a binary built outside (CI's offline image test) ------------------------------
FROM scratch AS prebuilt
COPY target/image/ /out/

FROM ${BINARY_FROM} AS binary

# ---- frontend: HAMi-WebUI's console, built from upstream's sources at a pinned tag ------------
FROM ${NODE_IMAGE} AS frontend-build
ARG HAMI_WEBUI_FRONTEND_REF=v2.0.0
ENV COREPACK_ENABLE_DOWNLOAD_PROMPT=0 \
    CI=true
WORKDIR /src
# GitHub's archive of the tag (the slim image has no git); one top-level directory, stripped.
ADD https://github.com/Project-HAMi/HAMi-WebUI/archive/${HAMI_WEBUI_FRONTEND_REF}.tar.gz /tmp/hami-webui.tar.gz
RUN tar -xzf /tmp/hami-webui.tar.gz --strip-components=1 -C /src \
 && rm /tmp/hami-webui.tar.gz \
 && corepack enable \
 && pnpm install --frozen-lockfile --filter hami-webui-web... \
 && pnpm --filter hami-webui-web run build \
 && grep -q 'data-hami-webui-base' public/index.html \
 && mkdir -p /out \
 && cp -r public /out/public \
 && chmod -R u=rwX,go=rX /out/public

# ---- frontend-prebuilt: a site built outside (CI's offline image test) -----------------------
FROM scratch AS frontend-prebuilt
COPY target/image-public/ /out/public/

FROM frontend-${FRONTEND_FROM} AS frontend

# ---- runtime ---------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE}
ARG HAMI_WEBUI_REVISION=unknown
LABEL org.opencontainers.image.title="hami-webui-server" \
      org.opencontainers.image.description="Drop-in Rust backend for HAMi-WebUI" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.revision="${HAMI_WEBUI_REVISION}"
WORKDIR /apps
COPY --from=binary /out/ /apps/
COPY --from=frontend /out/public/ /apps/public/
COPY config/config.yaml /apps/config/config.yaml
USER 65532:65532
# 8000: REST API, /metrics, /readyz, /livez. 3000: the web entry of the 2.0 image (the
# console from /apps/public, /api/vgpu/v1/*, /health_check).
EXPOSE 8000 3000
# The binary probes its own /health_check on the public port (no curl in the image). It
# finds the port through the same configuration the server reads: the relative default
# --conf resolves under WORKDIR /apps, and HAMI_WEBUI_* variables reach it too. Kubernetes
# ignores this (charts declare probes); Docker and Podman (docker format) use it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/apps/hami-webui", "--healthcheck"]
ENTRYPOINT ["/apps/hami-webui"]
CMD ["--conf", "/apps/config/config.yaml"]
