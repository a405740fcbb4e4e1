# kiemdich central image: the aggregator, its one-shot jobs (migrations, broker files) and the
# simulators. One image, several commands (docker-compose.yml picks them):
#
#   docker build -t kiemdich .
#   docker run --rm kiemdich --help
#   docker run --rm kiemdich aggregator run --validate-config
#
# Gate devices (Raspberry Pi class) install `.[edge]` natively instead; see firmware_config/.

FROM python:3.11-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# A virtualenv is the one directory the runtime stage copies: no compilers, no pip cache.
RUN python -m venv /opt/kiemdich
WORKDIR /src
COPY pyproject.toml README.md ./
COPY contract ./contract
COPY edge ./edge
COPY aggregator ./aggregator
COPY simulators ./simulators
COPY kiemdich ./kiemdich
COPY firmware_config ./firmware_config
# Not editable: the installed package carries its migrations, templates and static files.
# libzbar0 is left out on purpose: only the edge's zbar decoder loads it, never the aggregator.
RUN /opt/kiemdich/bin/pip install '.[aggregator,sim]'


FROM python:3.11-slim-bookworm

# uid/gid 1883 is the eclipse-mosquitto image's "mosquitto" user: the broker password file
# that broker-init writes (mode 0600) and the aggregators update (devices issued on the admin
# page) is then readable by the broker without any chown between containers.
ARG APP_UID=1883
RUN groupadd --system --gid "${APP_UID}" kiemdich \
 && useradd --system --uid "${APP_UID}" --gid kiemdich --home-dir /var/lib/kiemdich \
        --no-create-home --shell /usr/sbin/nologin kiemdich \
 && install -d -o kiemdich -g kiemdich -m 0750 \
        /var/lib/kiemdich /var/lib/kiemdich/devices /var/lib/kiemdich/sim /var/lib/kiemdich-broker \
 && printf '{}\n' > /var/lib/kiemdich/devices/credentials.json \
 && chown kiemdich:kiemdich /var/lib/kiemdich/devices/credentials.json \
 && chmod 0600 /var/lib/kiemdich/devices/credentials.json
# A fresh named volume mounted on these directories starts as a copy of them (owner, mode and
# the empty device credentials file), so the one-shot jobs can write there without root.

COPY --from=build /opt/kiemdich /opt/kiemdich
ENV PATH=/opt/kiemdich/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    KIEMDICH_HTTP_HOST=0.0.0.0 \
    KIEMDICH_HTTP_PORT=8000

USER kiemdich
WORKDIR /var/lib/kiemdich
EXPOSE 8000

# Liveness only (the process answers HTTP); docker-compose.yml checks /readyz for the
# aggregators and turns this off for the one-shot jobs and the simulators.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c 'import os, urllib.request as u; u.urlopen("http://127.0.0.1:%s/healthz" % os.environ.get("KIEMDICH_HTTP_PORT", "8000"), timeout=4)'

ENTRYPOINT ["kiemdich"]
CMD ["aggregator", "run"]
