#!/bin/sh
# `pip install` into the image's venv, trusting the build context's CA bundle when one was supplied
# (docker/local/ca-certificates.crt), for networks that intercept TLS.
set -eu
bundle=/build/local/ca-certificates.crt
if [ -s "$bundle" ]; then
    export PIP_CERT="$bundle"
fi
exec /opt/venv/bin/pip install "$@"
