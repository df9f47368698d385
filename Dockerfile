# hami-webui-server container image.
#
#   docker build --build-arg HAMI_WEBUI_REVISION=$(git rev-parse --short=12 HEAD) -t hami-webui-server .
#
# Layout (the contract with HAMi-WebUI's charts):
#   /apps/hami-webui           the server; the entrypoint, as in the HAMi-WebUI 2.0 image
#   /apps/server               the same binary (symlink), the 1.x backend image's path, which
#                              the 1.x chart runs as `/apps/server --conf /apps/config/config.yaml`
#   /apps/config/config.yaml   default configuration; charts mount their ConfigMap over /apps/config/
# Runs as 65532:65532 and writes nothing, so a read-only root filesystem works.
#
# Build arguments:
#   HAMI_WEBUI_REVISION  git revision reported by --version and hami_webui_build_info
#                        (the build context has no .git)
#   BUILD_IMAGE          Rust toolchain image of the build stage
#   RUNTIME_IMAGE        base of the final image (glibc, CA certificates, time zones)
#   BINARY_FROM          `build` (default) compiles from source; `prebuilt` takes an already
#                        built tree from target/image/ (hami-webui plus the server symlink)
#                        and skips the build stage, for offline smoke tests

ARG BUILD_IMAGE=docker.io/library/rust:1.89-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
ARG BINARY_FROM=build

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

# ---- runtime ---------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE}
ARG HAMI_WEBUI_REVISION=unknown
LABEL org.opencontainers.image.title="hami-webui-server" \
      org.opencontainers.image.description="Drop-in Rust backend for HAMi-WebUI" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.revision="${HAMI_WEBUI_REVISION}"
WORKDIR /apps
COPY --from=binary /out/ /apps/
COPY config/config.yaml /apps/config/config.yaml
USER 65532:65532
# 8000: REST API, /metrics, /readyz, /livez. 3000: the web entry of the 2.0 image (console,
# /api/vgpu, /health_check), served once a built frontend is present.
EXPOSE 8000 3000
ENTRYPOINT ["/apps/hami-webui"]
CMD ["--conf", "/apps/config/config.yaml"]
