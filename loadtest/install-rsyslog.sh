#!/usr/bin/env bash
# Installs rsyslog and the given output-module packages with apt unless MODULE (a plugin file
# under /usr/lib/x86_64-linux-gnu/rsyslog) is already there. The system's rsyslog service is
# not started while installing (policy-rc.d): the harness runs its own rsyslogd.
#
#   usage: loadtest/install-rsyslog.sh MODULE PACKAGE...
#   e.g.   loadtest/install-rsyslog.sh omkafka.so rsyslog-kafka
set -euo pipefail
module=$1; shift
if command -v rsyslogd >/dev/null && [ -e "/usr/lib/x86_64-linux-gnu/rsyslog/$module" ]; then
  exit 0
fi
echo "== installing rsyslog $* (apt)"
export DEBIAN_FRONTEND=noninteractive
started_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  started_policy=1
fi
apt-get update -qq
apt-get install -y -q rsyslog "$@" >/dev/null
if [ "$started_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
