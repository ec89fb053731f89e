#!/usr/bin/env bash
# The Debian package end to end, on this machine (root needed: dpkg -i):
#   build it with `cargo deb`, install it with `dpkg -i`, check what it installed (binary,
#   conffiles, units, the logtail user, /var/lib/logtail), start the gateway exactly as
#   logtail.service's ExecStart would (its User, WorkingDirectory and capabilities, read from the
#   installed unit: systemd need not run here), send lines with `logger` over TCP and the Unix
#   socket, read them back with `logtail search`, reload it with SIGHUP (ExecReload), stop it
#   with SIGTERM (exit 0), then
#   `dpkg --purge` and check that nothing is left.
# Called by tests/run.sh after its release build. LOGTAIL_DEB_NO_BUILD=1 packages
# target/release/logtail as it is (no cargo build).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "tests/package.sh: must run as root (dpkg -i, runuser)" >&2
  exit 1
fi
if dpkg -s logtail >/dev/null 2>&1; then
  echo "tests/package.sh: a logtail package is already installed here; not touching it" >&2
  exit 1
fi
if [ -e /var/lib/logtail ] || [ -e /etc/logtail ]; then
  echo "tests/package.sh: /var/lib/logtail or /etc/logtail exists without the package; not touching it" >&2
  exit 1
fi

# cargo-deb: about 2 minutes to build, once (measured 2m05s on the 2-core CI machine).
if ! command -v cargo-deb >/dev/null; then
  echo "== cargo install cargo-deb (once, ~2 min)"
  cargo install cargo-deb --locked
fi

echo "== cargo deb"
if [ "${LOGTAIL_DEB_NO_BUILD:-}" != 1 ]; then
  cargo build --release --locked --bin logtail
fi
deb=$(cargo deb --no-build --locked 2>/dev/null | tail -n 1)
[ -f "$deb" ] || { echo "cargo deb did not print a package path: $deb" >&2; exit 1; }
echo "$deb"

work=$(mktemp -d)
gateway_pid=
cleanup() {
  [ -n "$gateway_pid" ] && kill -9 "$gateway_pid" 2>/dev/null || true
  dpkg --purge logtail >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "tests/package.sh: FAILED: $*" >&2; exit 1; }

echo "== dpkg -i"
dpkg -i "$deb"
unit_dir=/lib/systemd/system
[ -f "$unit_dir/logtail.service" ] || unit_dir=/usr/lib/systemd/system
for f in /usr/bin/logtail /etc/logtail/logtail.toml /etc/logtail/agent.toml \
         "$unit_dir/logtail.service" "$unit_dir/logtail-agent.service"; do
  [ -f "$f" ] || fail "$f not installed"
done
dpkg-query -W -f='${Conffiles}\n' logtail | grep -q /etc/logtail/logtail.toml \
  || fail "/etc/logtail/logtail.toml is not a conffile"
getent passwd logtail >/dev/null || fail "no logtail user"
[ "$(stat -c %U:%G:%a /var/lib/logtail)" = logtail:logtail:750 ] \
  || fail "/var/lib/logtail is $(stat -c %U:%G:%a /var/lib/logtail), not logtail:logtail:750"
[ "$(stat -c %U:%G:%a /etc/logtail/logtail.toml)" = root:logtail:640 ] \
  || fail "/etc/logtail/logtail.toml is $(stat -c %U:%G:%a /etc/logtail/logtail.toml)"
for key in "User=logtail" "AmbientCapabilities=CAP_NET_BIND_SERVICE" "Restart=on-failure" \
           "ExecReload=/bin/kill -HUP \$MAINPID" "ProtectSystem=strict" "NoNewPrivileges=yes" \
           "WorkingDirectory=/var/lib/logtail"; do
  grep -qxF "$key" "$unit_dir/logtail.service" || fail "logtail.service lacks $key"
done
if command -v systemd-analyze >/dev/null; then
  systemd-analyze verify "$unit_dir/logtail.service" "$unit_dir/logtail-agent.service" \
    || fail "systemd-analyze verify"
fi

echo "== the installed configs validate, as the logtail user from its working directory"
(cd /var/lib/logtail && runuser -u logtail -- /usr/bin/logtail validate \
  --config /etc/logtail/logtail.toml >/dev/null) || fail "logtail validate (gateway)"
(cd /var/lib/logtail && runuser -u logtail -- /usr/bin/logtail validate --agent \
  --config /etc/logtail/agent.toml >/dev/null) || fail "logtail validate --agent"

echo "== the gateway, as logtail.service's ExecStart runs it"
unit_value() { sed -n "s/^$1=//p" "$unit_dir/logtail.service" | head -n 1; }
exec_start=$(unit_value ExecStart)
user=$(unit_value User)
group=$(unit_value Group)
workdir=$(unit_value WorkingDirectory)
for port in 5514 5515 9100; do
  if ss -Htln "sport = :$port" | grep -q . || ss -Huln "sport = :$port" | grep -q .; then
    fail "port $port (the packaged config's) is taken on this machine"
  fi
done
# setpriv: the unit's user and group, its one ambient capability, no new privileges.
( cd "$workdir" && exec setpriv --reuid="$user" --regid="$group" --init-groups \
    --inh-caps=+net_bind_service --ambient-caps=+net_bind_service --no-new-privs \
    $exec_start ) >"$work/gateway.log" 2>&1 &
gateway_pid=$!
for _ in $(seq 1 100); do
  grep -q "gateway running" "$work/gateway.log" && break
  kill -0 "$gateway_pid" 2>/dev/null || { cat "$work/gateway.log"; fail "the gateway exited"; }
  sleep 0.1
done
grep -q "gateway running" "$work/gateway.log" || { cat "$work/gateway.log"; fail "the gateway did not start"; }
[ "$(stat -c %U /var/lib/logtail/data/store)" = logtail ] || fail "the store is not the logtail user's"

marker="package-test-$$-$(date +%s)"
logger --server 127.0.0.1 --port 5514 --tcp --rfc5424 -t pkgtest "$marker over tcp"
logger --socket /var/lib/logtail/run/log.sock -t pkgtest "$marker over the unix socket"
found=
for _ in $(seq 1 100); do
  found=$(cd "$workdir" && runuser -u logtail -- /usr/bin/logtail search \
    --config /etc/logtail/logtail.toml --format text --oldest-first "\"$marker\"" || true)
  [ "$(printf '%s\n' "$found" | grep -c "$marker")" -eq 2 ] && break
  sleep 0.1
done
printf '%s\n' "$found" | grep -q "$marker over tcp" || { cat "$work/gateway.log"; fail "the TCP line was not stored: $found"; }
printf '%s\n' "$found" | grep -q "$marker over the unix socket" || fail "the Unix socket line was not stored: $found"
[ "$(printf '%s\n' "$found" | grep -c "$marker")" -eq 2 ] || fail "expected exactly 2 lines: $found"

# systemctl reload: ExecReload sends SIGHUP; the gateway reads its file again and keeps running.
kill -HUP "$gateway_pid"
for _ in $(seq 1 50); do
  grep -q "the configuration is unchanged" "$work/gateway.log" && break
  sleep 0.1
done
grep -q "the configuration is unchanged" "$work/gateway.log" || { cat "$work/gateway.log"; fail "SIGHUP was not a reload"; }
kill -0 "$gateway_pid" 2>/dev/null || fail "the gateway died on SIGHUP"

kill -TERM "$gateway_pid"
status=0
wait "$gateway_pid" || status=$?
gateway_pid=
[ "$status" -eq 0 ] || { cat "$work/gateway.log"; fail "the gateway exited $status on SIGTERM"; }

echo "== dpkg --purge"
dpkg --purge logtail
for f in /usr/bin/logtail /etc/logtail /var/lib/logtail "$unit_dir/logtail.service" \
         "$unit_dir/logtail-agent.service"; do
  [ ! -e "$f" ] || fail "$f left after purge"
done
dpkg -s logtail >/dev/null 2>&1 && fail "the package is still known to dpkg"
echo "== package test passed: $deb"
