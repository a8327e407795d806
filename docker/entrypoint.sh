#!/bin/sh
# The image's entry point.
#   serve                 the API on $WDREC_HOST:$WDREC_PORT from $WDREC_ARTIFACTS_DIR (the default command)
#   train [ARGS]          train now (a new artifact version; `current` switches when it is complete)
#   train-if-missing      train only when $WDREC_ARTIFACTS_DIR/current does not exist yet
#   anything else         run as a command, e.g. `wdrec evaluate --artifacts /artifacts`
# $WDREC_TRAIN_ARGS (e.g. "--set ablations=false") is added to every training run, before the ARGS.
# Training reads the L.POINT folder mounted at $WDREC_DATA_DIR (/data) when it holds any file, and the
# embedded default data set (`wdrec generate`, the same one `make run` uses) otherwise.
set -eu

artifacts="${WDREC_ARTIFACTS_DIR:-/artifacts}"
data="${WDREC_DATA_DIR:-/data}"

train() {
    if [ -d "$data" ] && [ -n "$(ls -A "$data")" ]; then
        echo "wdrec: training on the L.POINT folder mounted at $data"
        source_dir="$data"
    else
        source_dir="$(mktemp -d)/generated"
        echo "wdrec: no data mounted at $data; training on the embedded default data set"
        wdrec generate "$source_dir"
    fi
    # Unquoted on purpose: the variable holds several arguments.
    # shellcheck disable=SC2086
    exec wdrec train --data "$source_dir" --artifacts "$artifacts" ${WDREC_TRAIN_ARGS:-} "$@"
}

command="${1:-serve}"
[ $# -gt 0 ] && shift
case "$command" in
    serve)
        exec wdrec serve --artifacts "$artifacts" "$@"
        ;;
    train)
        train "$@"
        ;;
    train-if-missing)
        if [ -e "$artifacts/current" ]; then
            echo "wdrec: $artifacts/current exists; not training (docker compose run --rm train retrains)"
            exit 0
        fi
        train "$@"
        ;;
    *)
        exec "$command" "$@"
        ;;
esac
