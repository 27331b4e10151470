# Sourced by the build and test scripts: SUPPORTED_TENSORFLOW, the bash array of the TensorFlow
# versions (major.minor, oldest first) swa_ops builds for, read from python/swa_ops/_version.py,
# where they are written once.
mapfile -t SUPPORTED_TENSORFLOW < <(
  sed -n 's/^SUPPORTED_TENSORFLOW = (\(.*\))$/\1/p' \
    "$(dirname "${BASH_SOURCE[0]}")/../python/swa_ops/_version.py" | tr -d '" ' | tr ',' '\n')
[ ${#SUPPORTED_TENSORFLOW[@]} -gt 0 ] || {
  echo "could not read SUPPORTED_TENSORFLOW from python/swa_ops/_version.py" >&2; exit 1; }
