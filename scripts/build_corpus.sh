#!/usr/bin/env bash
# Builds the English text corpus in data/corpus/ from Debian packages (see docs/DATA.md):
#   gcide.jsonl jargon.jsonl devil.jsonl fortunes.jsonl bible.jsonl  -- one {"id","text"} document per line
#   LICENSES.md   -- the packages' copyright files, verbatim
#   SOURCES.txt   -- package versions, document counts, sizes and sha256 of each file
# Deterministic for fixed package versions. Quick no-op when SOURCES.txt is newer than this script
# and the extractor (pass --force to rebuild). Installs the packages when missing (needs root).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=data/corpus
PKGS="dict-gcide dict-jargon dict-devil fortunes fortunes-min bible-kjv bible-kjv-text python3"
force=0; [ "${1:-}" = "--force" ] && force=1

if [ $force -eq 0 ] && [ -f $OUT/SOURCES.txt ] && [ $OUT/SOURCES.txt -nt scripts/build_corpus.sh ] \
   && [ $OUT/SOURCES.txt -nt scripts/corpus_extract.py ]; then
  echo "corpus: up to date ($OUT, $(du -sh $OUT | cut -f1)); --force rebuilds" >&2
  exit 0
fi

missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "corpus: installing$missing" >&2
  if [ "$(id -u)" -ne 0 ]; then echo "corpus: need root to apt-get install$missing" >&2; exit 1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing >&2
fi

mkdir -p $OUT
# SOURCES.txt marks a complete corpus: drop it first, so that a rebuild interrupted half-way (some
# files new, some old) is not taken as up to date by the next run.
rm -f $OUT/SOURCES.txt
for s in gcide jargon devil fortunes bible; do
  python3 scripts/corpus_extract.py $s $OUT/$s.jsonl
done

{
  echo "# Licences of the corpus sources"
  echo
  echo "data/corpus/ is extracted from these Debian packages; each section is the package's"
  echo "/usr/share/doc/<package>/copyright file, verbatim. A summary is in docs/DATA.md."
  for p in dict-gcide dict-jargon dict-devil fortunes bible-kjv-text; do
    echo; echo "## $p $(dpkg-query -W -f='${Version}' $p)"; echo; echo '```'
    cat /usr/share/doc/$p/copyright; echo '```'
  done
} > $OUT/LICENSES.md.tmp && mv $OUT/LICENSES.md.tmp $OUT/LICENSES.md

{
  echo "# package versions"
  for p in $PKGS; do echo "$p $(dpkg-query -W -f='${Version}' $p)"; done
  echo "# file documents bytes sha256"
  for s in gcide jargon devil fortunes bible; do
    f=$OUT/$s.jsonl
    echo "$s.jsonl $(wc -l < $f) $(stat -c %s $f) $(sha256sum $f | cut -d' ' -f1)"
  done
} > $OUT/SOURCES.txt.tmp && mv $OUT/SOURCES.txt.tmp $OUT/SOURCES.txt
cat $OUT/SOURCES.txt >&2
echo "corpus: $(du -sh $OUT | cut -f1) in $OUT" >&2
