#!/usr/bin/env bash
# The research QA bench's corpus: the Python 3.11 manual (HTML) from Debian's python3.11-doc.
set -euo pipefail
if [ ! -d /usr/share/doc/python3.11/html/faq ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3.11-doc >/dev/null
fi
echo "corpus: /usr/share/doc/python3.11/html ($(find /usr/share/doc/python3.11/html/{tutorial,faq,howto,reference,using} -name '*.html' | wc -l) pages)"
