# syntax=docker/dockerfile:1
# mobvibe-worker: a static-stdlib release build on a distroless C++ runtime (no shell, no compiler).

FROM swift:6.3-bookworm AS build
# tini (PID 1) and bubblewrap (each job's sandbox, JOB_SANDBOX) come from Debian's packages.
RUN apt-get update && apt-get install -y --no-install-recommends tini bubblewrap && rm -rf /var/lib/apt/lists/*
WORKDIR /build
# Resolve dependencies first so that source edits reuse this layer.
COPY Package.swift ./
RUN swift package resolve
COPY Sources ./Sources
COPY Tests ./Tests
# Link flags for memory (docs/BENCHMARKS.md, "Memory"); the same as scripts/verify-image:
# - lld with packed relative relocations (DT_RELR, glibc 2.36+): the binary stays position-independent
#   (ASLR) while its relocation table shrinks from 2.9 MB to 25 kB, which the loader no longer reads;
# - no dynamic symbol table of our own code (the static Swift runtime asks for -export-dynamic): 40,000
#   exported symbols the loader searched at start become 561.
RUN swift build -c release --static-swift-stdlib --product worker \
        -Xswiftc -use-ld=lld -Xlinker -z -Xlinker pack-relative-relocs -Xlinker --no-export-dynamic \
    && swift build -c release --product worker-launch \
    && install -D -m 0755 "$(swift build -c release --show-bin-path)/worker" /out/usr/local/bin/worker \
    && install -D -m 0755 "$(swift build -c release --show-bin-path)/worker-launch" /out/usr/local/bin/worker-launch \
    && strip /out/usr/local/bin/worker /out/usr/local/bin/worker-launch \
    && install -D -m 0755 /usr/bin/tini-static /out/usr/bin/tini
# bwrap and the libraries it needs beyond the C runtime the base image has (libselinux, libcap,
# libpcre2), under /usr/lib whether or not the base merges /lib into /usr.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN install -D -m 0755 /usr/bin/bwrap /out/usr/bin/bwrap \
    && for lib in $(ldd /usr/bin/bwrap | grep -o '/[^ ]*' | grep -v -e '/libc\.so' -e '/ld-linux'); do \
         install -D -m 0644 "$(readlink -f "$lib")" "/out/usr/lib/$(basename "$(dirname "$lib")")/$(basename "$lib")"; \
       done

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /
# No JOB_HANDLER here: in production the worker refuses to start until JOB_COMMAND (or
# JOB_HANDLER=echo, for a demo) says what to run. Commands run under bwrap, which needs user
# namespaces in the container (docs/WORKER_SERVICE.md, "The sandbox", In containers); without a
# working sandbox a production worker refuses to start unless JOB_SANDBOX=none.
ENV APP_ENV=production \
    HEALTH_CHECK_HOST=0.0.0.0 \
    HEALTH_CHECK_PORT=8080
# The embedded SQLite default (./worker.sqlite) lands in the non-root user's home.
WORKDIR /home/nonroot
USER 65532:65532
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 CMD ["/usr/local/bin/worker", "healthcheck"]
STOPSIGNAL SIGTERM
# tini is PID 1: it forwards SIGTERM/SIGINT to the worker and reaps orphaned grandchildren of job commands.
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/worker"]
CMD ["run"]
