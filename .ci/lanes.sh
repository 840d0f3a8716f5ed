#!/usr/bin/env bash
# `make test`'s suite in two lanes at once. Most of it waits (settle times, daemons, servers), not computes,
# so two lanes take about the time of the longer one:
#   lane 1: every test but the break-it probes, on the real iRODS (or the stand-in where none is found), then,
#           when the real iRODS was used, the stand-in's second pass (`make test-standin`);
#   lane 2: the probes (tests/integration/test_adv_*.py; those marked slow are left to `make test-slow`), then
#           the chaos campaign.
# Each lane has its own pytest base directory: a pytest session that makes its own under /tmp/pytest-of-<user>
# sets that directory to 0700 and would lock the iRODS server out of the other lane's register-mode landings.
# Lane 2 prints when lane 1 is done; then the tests that change the server run alone. Each run lists its
# slowest tests (--durations). Exit status 0 when all passed.
set -uo pipefail
py=${1:?usage: lanes.sh PYTHON}
second_pass=${2:-0}
tmp=$(mktemp -d /tmp/ingestd-tests.XXXXXX)
chmod 755 "$tmp"
trap 'rm -rf "$tmp"' EXIT
probes=(tests/integration/test_adv_*.py)
# the chaos campaign (3 minutes) runs in lane 2 after the probes: lane 1 with the second pass is the longer one
chaos=(tests/integration/test_chaos.py)
(
  rc=0
  "$py" -m pytest -q -ra --durations=15 -m "not slow" --basetemp="$tmp/probes" "${probes[@]}" || rc=$?
  echo "---- lane 2: the chaos campaign ----"
  "$py" -m pytest -q -ra --basetemp="$tmp/chaos" "${chaos[@]}" || rc=$?
  exit "$rc"
) > "$tmp/lane2.log" 2>&1 &
lane2=$!
# tests that change the shared server itself (test_hash_scheme.py switches it to MD5 for a moment) run alone,
# once both lanes are done: the other lane's files would be checksummed in MD5 meanwhile
alone=(tests/integration/test_hash_scheme.py)
ignore=()
for f in "${probes[@]}" "${alone[@]}" "${chaos[@]}"; do ignore+=(--ignore="$f"); done
rc1=0
"$py" -m pytest -q -ra --durations=25 --basetemp="$tmp/main" "${ignore[@]}" tests || rc1=$?
if [ "$second_pass" = 1 ]; then
  echo "---- lane 1: the stand-in's second pass ----"
  INGESTD_SECOND_PASS=1 INGESTD_TEST_IRODS=standin "$py" -m pytest -q -ra --durations=10 \
    --basetemp="$tmp/standin" tests/integration --deselect tests/integration/test_chaos.py || rc1=$?
fi
wait "$lane2"
rc2=$?
echo "---- lane 2: the probes on the real iRODS, then the chaos campaign ----"
cat "$tmp/lane2.log"
echo "---- alone: tests that change the server ----"
"$py" -m pytest -q -ra --basetemp="$tmp/alone" "${alone[@]}"
rc3=$?
echo "lane 1 (the suite, second pass) exit $rc1; lane 2 (probes) exit $rc2; alone exit $rc3"
[ "$rc1" = 0 ] && [ "$rc2" = 0 ] && [ "$rc3" = 0 ]
