#!/usr/bin/env bash
# docker-compose.yml run for real, with podman and docker-compose, and checked as a user would:
# the stack comes up (PostgreSQL healthy, init done, workers, dashboard), the study reaches its
# target with nothing left RUNNING, the dashboard answers on 127.0.0.1 only and serves a model
# from the shared artifact volume, a stopped worker fails its trial `interrupted` (exit 143)
# and `up` again finishes the study, workers scale up while it runs, `down -v` leaves nothing.
#
# No image registry is needed: the base images are built here (Debian bookworm by debootstrap
# from this machine's apt mirror; Python 3.11, PostgreSQL and uv on top of it) and kept for the
# next run (--fresh rebuilds them); the hpo image is built from the repository's Dockerfile
# with the host's uv cache, then removed with everything else the run created.
#
# Usage (as root): tests/compose/run.sh [--fresh | --keep-image]
# --keep-image reuses an hpo image left by an earlier --keep-image run and keeps it (to iterate
# on the checks without the build).
# Needs: podman, runc, debootstrap, docker-compose (Debian packages), uv, the CIFAR-10 sample
# (../shared/data/cifar10-sample.npz or $HPO_SAMPLE).
set -euo pipefail
started=$SECONDS
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
sample=$(readlink -f "${HPO_SAMPLE:-$root/../shared/data/cifar10-sample.npz}")
project=hpocomposecheck
study=compose-check
target=$(awk -F' *= *' '$1 == "n_trials" {print $2}' "$here/tiny.toml")
work=$(mktemp -d /tmp/hpo-compose.XXXXXX)
trap 'rm -rf "$work"' EXIT  # until the stack's own clean-up takes over
failures=0
# shellcheck source=tests/compose/images.sh
source "$here/images.sh"

line() { awk '{$1 = $1; print}' | paste -sd' ' -; }  # command output on one line
say() { printf 'compose: %s\n' "$*"; }
fail_setup() { say "cannot run: $*" >&2; exit 1; }
check() {  # NAME CONDITION-RESULT DETAIL
    if [ "$2" = ok ]; then say "check $1: ok ($3)"; else say "check $1: FAILED ($3)"; failures=$((failures + 1)); fi
}

for tool in podman runc debootstrap docker-compose uv python3 curl; do
    command -v "$tool" >/dev/null 2>&1 || fail_setup "$tool is not installed"
done
[ "$(id -u)" = 0 ] || fail_setup "run as root (podman's rootful storage and networks)"
[ -f "$sample" ] || fail_setup "the CIFAR-10 sample is missing at $sample (set HPO_SAMPLE)"

podman_setup
keep_image=no
[ "${1:-}" = --keep-image ] && keep_image=yes
if [ "${1:-}" = --fresh ]; then
    podman rmi --force "${BASE_IMAGES[@]}" >/dev/null 2>&1 || true
fi
podman run --rm --network none "$DEBIAN_IMAGE" true >/dev/null 2>&1 || {
    build_debian || fail_setup "debootstrap failed"
    podman run --rm --network none "$DEBIAN_IMAGE" true >/dev/null 2>"$work/podman.err" \
        || fail_setup "podman cannot start a container: $(tail -1 "$work/podman.err")"
}

# The Docker API for docker-compose, served by podman. docker-compose (not Debian's
# podman-compose 1.0) because it honours depends_on conditions (service_healthy,
# service_completed_successfully), which the stack's start order relies on.
podman system service --time=0 "unix://$work/podman.sock" > "$work/service.log" 2>&1 &
service_pid=$!
export DOCKER_HOST="unix://$work/podman.sock"
for _ in $(seq 50); do [ -S "$work/podman.sock" ] && break; sleep 0.2; done

# podman runs healthchecks from systemd timers; without systemd (containers, CI) nothing runs
# them, so this loop does, every 2 s, for the project's containers that have one.
tick_healthchecks() {
    while sleep 2; do
        for id in $(podman ps -q --filter "label=com.docker.compose.project=$project"); do
            podman healthcheck run "$id" >/dev/null 2>&1 || true
        done
    done
}
tick_healthchecks &
ticker_pid=$!

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
password=$(python3 -c 'import secrets; print(secrets.token_hex(12))')
mkdir -p "$work/data"
cp "$sample" "$work/data/cifar10-sample.npz"
cp "$here/tiny.toml" "$work/data/tiny.toml"
chmod -R a+rX "$work/data"
cat > "$work/env" <<ENV
POSTGRES_USER=hpo
POSTGRES_PASSWORD=$password
POSTGRES_DB=hpo
POSTGRES_IMAGE=$POSTGRES_IMAGE
HPO_SPEC=/data/tiny.toml
HPO_STUDY=$study
HPO_DATA=/data/cifar10-sample.npz
HPO_DATA_DIR=$work/data
HPO_HEARTBEAT_INTERVAL=2
HPO_GRACE_PERIOD=10
HPO_ARTIFACTS_DIR=artifacts
DASHBOARD_PORT=$port
ENV
compose() {
    docker-compose --project-name "$project" --project-directory "$root" \
        -f "$root/docker-compose.yml" --env-file "$work/env" "$@"
}

cleanup() {
    local code=$?
    trap - EXIT
    if [ "$code" != 0 ] || [ "$failures" != 0 ]; then
        say "logs of the failed run (last lines of each service):"
        compose logs --no-color --tail 15 2>&1 | sed 's/^/  /' || true
    fi
    compose down -v --remove-orphans >/dev/null 2>&1 || true
    kill "$ticker_pid" 2>/dev/null || true
    kill "$service_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    [ "$keep_image" = yes ] || podman rmi --force "$HPO_IMAGE" >/dev/null 2>&1 || true
    podman image prune --force >/dev/null 2>&1 || true
    rm -rf "$work"
    say "wall time $((SECONDS - started)) s"
    if [ "$code" = 0 ] && [ "$failures" != 0 ]; then code=1; fi
    [ "$code" = 0 ] && say "all checks passed" || say "FAILED"
    exit "$code"
}
trap cleanup EXIT
trap 'exit 143' TERM INT  # a time limit or Ctrl-C still cleans up

step=$SECONDS
build_uv && build_python && build_postgres || fail_setup "building the base images failed"
say "base images ready in $((SECONDS - step)) s"
step=$SECONDS
[ "$keep_image" = yes ] && have_image "$HPO_IMAGE" || build_hpo || fail_setup "building the hpo image from the Dockerfile failed"
say "hpo image built from the Dockerfile in $((SECONDS - step)) s ($(podman image inspect -f '{{.Size}}' "$HPO_IMAGE" | awk '{printf "%.1f GB", $1 / 1e9}'))"

# SQL against the study database, through the postgres container's local socket.
sql() { podman exec "${project}_postgres_1" psql -U hpo -d hpo -At -F ' ' -c "$1"; }
count() { sql "SELECT count(*) FROM trials WHERE state = '$1'"; }
container_of() { podman ps -a -q --filter "label=com.docker.compose.project=$project" \
    --filter "label=com.docker.compose.service=$1"; }
wait_for() {  # SECONDS DESCRIPTION COMMAND...
    local deadline=$((SECONDS + $1)) what=$2
    shift 2
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || { say "timed out after waiting for $what"; return 1; }
        sleep 1
    done
}
running_trials() { [ "$(count RUNNING)" -ge "$1" ]; }
complete_trials() { [ "$(count COMPLETE)" -ge "$1" ]; }
workers_exited() {
    local id
    for id in $(container_of worker); do
        [ "$(podman inspect -f '{{.State.Status}}' "$id")" = exited ] || return 1
    done
}
exit_codes() { for id in $(container_of worker); do podman inspect -f '{{.State.ExitCode}}' "$id"; done | sort | uniq -c | line; }

# 0. The image runs as a plain user, and the artifact volume's mount point is that user's, so a
#    new named volume is writable with Docker too (podman hands an empty volume to the
#    container's user anyway; Docker copies the owner of the image's folder).
user=$(podman run --rm "$HPO_IMAGE" id -un 2>/dev/null || true)
owner=$(podman run --rm "$HPO_IMAGE" stat -c %U /artifacts 2>/dev/null || true)
[ "$user" = hpo ] && [ "$owner" = hpo ] && r=ok || r=no
check "image user and artifact folder" "$r" "runs as ${user:-?}; /artifacts owned by ${owner:-nobody: missing}"

# 1. Up: PostgreSQL healthy, init done once, two workers and the dashboard running.
step=$SECONDS
compose up -d --scale worker=2 > "$work/up.log" 2>&1 || { tail -20 "$work/up.log"; exit 1; }
health=$(podman inspect -f '{{.State.Health.Status}}' "${project}_postgres_1")
init_code=$(podman inspect -f '{{.State.ExitCode}}' "${project}_init_1")
workers=$(container_of worker | wc -l)
[ "$health" = healthy ] && [ "$init_code" = 0 ] && [ "$workers" = 2 ] && r=ok || r=no
check "up" "$r" "postgres $health, init exit $init_code, $workers workers, $((SECONDS - step)) s"

# 2. More workers while the study runs: the running ones are kept, the new one takes a trial.
wait_for 300 "both workers in a trial" running_trials 2
before=$(container_of worker | sort | line)
compose up -d --scale worker=3 --no-recreate > "$work/scale.log" 2>&1 || { tail -20 "$work/scale.log"; exit 1; }
after=$(container_of worker | sort | line)
new=$(comm -13 <(tr ' ' '\n' <<< "$before") <(tr ' ' '\n' <<< "$after"))
new_host=$(podman inspect -f '{{.Config.Hostname}}' "$new" 2>/dev/null || echo none)
joined() { [ "$(sql "SELECT count(*) FROM trial_user_attributes WHERE key = 'worker' AND value_json LIKE '\"$new_host:%'")" -ge 1 ]; }
step=$SECONDS
wait_for 180 "a trial of the new worker" joined && r=ok || r=no
kept=$(comm -12 <(tr ' ' '\n' <<< "$before") <(tr ' ' '\n' <<< "$after") | wc -l)
check "scale up while running" "$r" "$(wc -w <<< "$after") workers, the $kept running kept, the new one ($new_host) took a trial after $((SECONDS - step)) s; $(count COMPLETE) of $target finished"

# 3. Stop the workers now, in the middle of their trials: every unfinished trial ends FAIL
#    `interrupted` (none left RUNNING) with its configuration queued again (WAITING), and each
#    worker exits 143 (SIGTERM through init).
running=$(count RUNNING)
compose stop worker > "$work/stop.log" 2>&1
codes=$(exit_codes)
failed=$(count FAIL)
interrupted=$(sql "SELECT count(*) FROM trials t JOIN trial_user_attributes a ON a.trial_id = t.trial_id AND a.key = 'fail_reason' WHERE t.state = 'FAIL' AND a.value_json = '\"interrupted\"'")
left=$(count RUNNING)
queued=$(count WAITING)
[ "$codes" = "3 143" ] && [ "$left" = 0 ] && [ "$failed" -ge 1 ] && [ "$interrupted" = "$failed" ] \
    && [ "$queued" = "$interrupted" ] && r=ok || r=no
check "stop mid-trial" "$r" "$running running at the stop; now $failed FAIL, $interrupted of them interrupted, $queued queued again, $left RUNNING; worker exit codes: $codes"

# 4. Up again: the study finishes; exactly the target finished (at most one more per extra
#    worker that counted at the same instant), nothing RUNNING, every worker exit 0.
step=$SECONDS
compose up -d --scale worker=2 > "$work/up2.log" 2>&1 || { tail -20 "$work/up2.log"; exit 1; }
wait_for 600 "the workers to finish" workers_exited && r=ok || r=no
complete=$(count COMPLETE)
states=$(sql "SELECT state FROM trials" | sort | uniq -c | line)
codes=$(exit_codes)
[ "$r" = ok ] && [ "$complete" -ge "$target" ] && [ "$complete" -le $((target + 1)) ] \
    && [ "$(count RUNNING)" = 0 ] && [ "$codes" = "2 0" ] && r=ok || r=no
trial_s=$(sql "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM datetime_complete - datetime_start)) FROM trials WHERE state = 'COMPLETE'" | awk '{printf "%.1f", $1}')
check "up again finishes the study" "$r" "target $target, trials: $states, median $trial_s s each; worker exit codes: $codes; $((SECONDS - step)) s"

# 5. The dashboard: answers on 127.0.0.1, lists the study, not published on other addresses.
studies=$(curl -fsS --max-time 20 "http://127.0.0.1:$port/api/studies" || true)
names=$(python3 -c 'import json, sys; print(" ".join(s["study_name"] for s in json.load(sys.stdin)["study_summaries"]))' <<< "${studies:-{\}}" 2>/dev/null || true)
published=$(podman port "${project}_dashboard_1" | line)
other=$(hostname -I | tr ' ' '\n' | grep -v '^127\.' | grep -v '^10\.88\.' | grep -v : | head -1 || true)
if [ -n "$other" ] && curl -s --max-time 5 -o /dev/null "http://$other:$port/"; then elsewhere="answers on $other"; else elsewhere="refused on ${other:-no other address}"; fi
[ "$names" = "$study" ] && [ "$published" = "8080/tcp -> 127.0.0.1:$port" ] && [ "$elsewhere" != "answers on $other" ] && r=ok || r=no
check "dashboard on 127.0.0.1 only" "$r" "studies: ${names:-none}; published $published; $elsewhere"

# 6. A front trial's model: in the shared artifact volume, and the same bytes from the dashboard.
read -r study_id trial_id key < <(sql "SELECT t.study_id, t.trial_id, a.key FROM trial_system_attributes a JOIN trials t ON t.trial_id = a.trial_id WHERE a.key LIKE 'artifacts:%' AND a.value_json LIKE '%folded-model.onnx%' ORDER BY t.trial_id LIMIT 1") || true
artifact=${key#artifacts:}
volume=$(podman volume inspect -f '{{.Mountpoint}}' "${project}_artifacts")
stored=$(find "$volume" -type f | wc -l)
if [ -n "$artifact" ] && [ -f "$volume/$artifact" ] \
    && curl -fsS --max-time 30 -o "$work/model.onnx" "http://127.0.0.1:$port/artifacts/$study_id/$trial_id/$artifact" \
    && cmp -s "$work/model.onnx" "$volume/$artifact"; then r=ok; else r=no; fi
check "model in the shared volume, downloadable" "$r" "$stored files in the volume; trial $trial_id's folded-model.onnx, $(stat -c %s "$work/model.onnx" 2>/dev/null || echo 0) bytes, same through the dashboard"

# 7. down -v leaves no container, volume or network of the project.
compose down -v > "$work/down.log" 2>&1 && down=ok || down="down -v failed"
leftover=$( (podman ps -a --format '{{.Names}}'; podman volume ls -q; podman network ls -q) \
    | grep -c "^$project" || true)
[ "$down" = ok ] && [ "$leftover" = 0 ] && r=ok || r=no
check "down -v leaves nothing" "$r" "$down; $leftover containers, volumes or networks left"
