#!/usr/bin/env bash
# Installs the livetalk OBS plugin (OBS 28 or newer, Linux).
#
#   packaging/obs/install.sh                 # build it, install for this user
#   packaging/obs/install.sh --system        # build it, install for everyone (root)
#   packaging/obs/install.sh --so FILE       # install an already built module
#   packaging/obs/install.sh --uninstall [--system]
#
# User folder:   ${XDG_CONFIG_HOME:-~/.config}/obs-studio/plugins/livetalk-obs/bin/64bit/livetalk-obs.so
# System folder: /usr/lib/<multiarch>/obs-plugins/livetalk-obs.so (Debian/Ubuntu; else
#                /usr/lib/obs-plugins), data in /usr/share/obs/obs-plugins/livetalk-obs/.
# Packagers: DESTDIR and PREFIX (default /usr) are honoured with --system.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
scope=user so="" uninstall=0
while [ $# -gt 0 ]; do
    case "$1" in
        --system) scope=system ;;
        --user) scope=user ;;
        --so) so=$2; shift ;;
        --uninstall) uninstall=1 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

if [ "$scope" = user ]; then
    dir="${XDG_CONFIG_HOME:-$HOME/.config}/obs-studio/plugins/livetalk-obs"
    module="$dir/bin/64bit/livetalk-obs.so"
    data="$dir/data"
else
    prefix=${PREFIX:-/usr}
    multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch 2>/dev/null || true)
    libdir="$prefix/lib${multiarch:+/$multiarch}"
    [ -d "${DESTDIR:-}$libdir/obs-plugins" ] || [ -n "${DESTDIR:-}" ] || libdir="$prefix/lib"
    module="${DESTDIR:-}$libdir/obs-plugins/livetalk-obs.so"
    data="${DESTDIR:-}$prefix/share/obs/obs-plugins/livetalk-obs"
fi

if [ "$uninstall" = 1 ]; then
    rm -f "$module"
    rm -rf "$data"
    [ "$scope" = user ] && rm -rf "$dir"
    echo "removed the livetalk OBS plugin ($module)"
    exit 0
fi

if [ -z "$so" ]; then
    so=$("$here/../../plugin/build.sh")
fi
if [ ! -f "$so" ]; then
    echo "install.sh: $so does not exist (build it with plugin/build.sh)" >&2
    exit 1
fi
install -D -m 0644 "$so" "$module"
install -d "$data/locale"
install -m 0644 "$here/en-US.ini" "$data/locale/en-US.ini"
echo "installed the livetalk OBS plugin: $module"
echo "restart OBS, then add a source: + → livetalk avatar (livetalk run must be running, or tick \"Start livetalk\")"
