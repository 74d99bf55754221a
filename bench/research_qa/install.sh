#!/usr/bin/env bash
# The research QA bench's corpora from Debian: the Python 3.11 manual (python3.11-doc) and the
# PostgreSQL 15 manual (postgresql-doc-15). The third, Cranfield, is in ../shared/datasets.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/../../scripts/lib/install.sh"
need=()
[ -d /usr/share/doc/python3.11/html/faq ] || need+=(python3.11-doc)
[ -f /usr/share/doc/postgresql-doc-15/html/index.html ] || need+=(postgresql-doc-15)
if [ ${#need[@]} -gt 0 ]; then
  apt_install "${need[@]}"
fi
echo "pydoc: /usr/share/doc/python3.11/html ($(find /usr/share/doc/python3.11/html/{tutorial,faq,howto,reference,using} -name '*.html' | wc -l) pages)"
echo "pgdoc: /usr/share/doc/postgresql-doc-15/html ($(find /usr/share/doc/postgresql-doc-15/html -maxdepth 1 -name '*.html' | wc -l) pages)"
