# Wharf: an OCI container image registry. Runs `wharf serve` as an unprivileged user.
#
#   docker build -t wharf .                                 # python:3.11-slim, wheels from PyPI
#   pip wheel --wheel-dir deploy/wheelhouse .                # or: wheels built beforehand ...
#   podman build --build-arg BASE=localhost/debian-python -t wharf .   # ... on another base
#
# BASE must provide python3 (3.11 or newer, with venv) and useradd (Debian's passwd).
ARG BASE=python:3.11-slim

FROM ${BASE} AS wheels
WORKDIR /src
COPY deploy/wheelhouse/ /wheels/
COPY pyproject.toml README.md ./
COPY registry ./registry
COPY storage ./storage
COPY auth ./auth
COPY replicator ./replicator
# the wheelhouse as given (an offline build), else Wharf and its dependencies from PyPI
RUN if ! ls /wheels/*.whl >/dev/null 2>&1; then \
      python3 -m pip wheel --no-cache-dir --wheel-dir /wheels . ; \
    fi

FROM ${BASE}
COPY --from=wheels /wheels /tmp/wheels
RUN python3 -m venv /opt/wharf \
 && /opt/wharf/bin/pip install --no-cache-dir --no-index --find-links=/tmp/wheels wharf \
 && rm -rf /tmp/wheels \
 && groupadd --system --gid 10001 wharf \
 && useradd --system --uid 10001 --gid wharf --home-dir /var/lib/wharf --shell /usr/sbin/nologin wharf \
 && mkdir -p /var/lib/wharf /etc/wharf \
 && chown wharf:wharf /var/lib/wharf
ENV PATH=/opt/wharf/bin:$PATH PYTHONUNBUFFERED=1
COPY deploy/config.yml /etc/wharf/config.yml
USER wharf:wharf
VOLUME ["/var/lib/wharf"]
EXPOSE 5000
# /healthz on the port of http.addr (REGISTRY_HTTP_ADDR if set): 200 while the database answers
HEALTHCHECK --interval=30s --timeout=5s CMD ["/opt/wharf/bin/python", "-c", "import os, sys, urllib.request; port = os.environ.get('REGISTRY_HTTP_ADDR', ':5000').rpartition(':')[2]; sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["wharf"]
CMD ["serve", "/etc/wharf/config.yml"]
