"""The real OHIF stack, started on loopback: the npm viewer build, Orthanc with DICOMweb, Debian's chromium.

Every process is started in its own session so that the harness can stop it,
and everything under it, by PID (see :class:`Stack`).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from dicom4qi.paths import SUITE_ROOT
from dicom4qi.process.sandbox import kill_group
from dicom4qi.process.services import PIDFILE

__all__ = ["Stack", "StackError", "chromium_path", "ensure_viewer", "free_port", "start_stack"]

ORTHANC = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")

APP_CONFIG = """/* Written by dicom4qi: the viewer reads from the Orthanc behind the same origin. */
window.config = {
  routerBasename: '/',
  extensions: [],
  modes: [],
  showStudyList: true,
  maxNumberOfWebWorkers: 2,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: false,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  disableConfirmationPrompts: true,
  investigationalUseDialog: { option: 'never' },
  defaultDataSourceName: 'dicomweb',
  dataSources: [
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'dicomweb',
      configuration: {
        friendlyName: 'dicom4qi Orthanc',
        name: 'orthanc',
        wadoUriRoot: '/wado',
        qidoRoot: '/dicom-web',
        wadoRoot: '/dicom-web',
        qidoSupportsIncludeField: false,
        imageRendering: 'wadors',
        thumbnailRendering: 'wadors',
        enableStudyLazyLoad: true,
        supportsFuzzyMatching: false,
        supportsWildcard: true,
        bulkDataURI: { enabled: true },
        omitQuotationForMultipartRequest: true,
      },
    },
  ],
};
"""


class StackError(RuntimeError):
    """A part of the stack could not be fetched or started."""


def chromium_path() -> str | None:
    env = os.environ.get("DICOM4QI_CHROMIUM")
    for cand in ([env] if env else []) + list(CHROMIUM_CANDIDATES):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_viewer(version: str, cache: Path) -> Path:
    """The viewer's dist folder for ``@ohif/app@version``, fetched with npm once into ``cache``."""
    cache = cache.resolve()
    target = cache / f"ohif-app-{version}"
    dist = target / "package" / "dist"
    if (dist / "index.html").is_file() and (dist / ".dicom4qi-config").is_file():
        return dist
    npm = shutil.which("npm")
    if npm is None:
        raise StackError("npm is not installed: it is needed to fetch @ohif/app")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        out = subprocess.run(
            [npm, "pack", f"@ohif/app@{version}", "--pack-destination", tmp, "--silent"],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp,
        )
        tarballs = list(Path(tmp).glob("*.tgz"))
        if out.returncode != 0 or not tarballs:
            raise StackError(f"npm pack @ohif/app@{version} failed: {(out.stderr or out.stdout).strip()[-400:]}")
        unpacked = Path(tmp) / "unpacked"
        with tarfile.open(tarballs[0]) as tar:
            tar.extractall(unpacked, filter="data")
        if not (unpacked / "package" / "dist" / "index.html").is_file():
            raise StackError(f"@ohif/app@{version} has no prebuilt dist/index.html")
        cfg = unpacked / "package" / "dist" / "app-config.js"
        if cfg.exists():
            cfg.rename(cfg.with_name("app-config.orig.js"))
        cfg.write_text(APP_CONFIG, encoding="utf-8")
        (unpacked / "package" / "dist" / ".dicom4qi-config").write_text("1")
        shutil.rmtree(target, ignore_errors=True)
        unpacked.rename(target)
    return dist


def _unlimited() -> None:
    # The stack is not the tool call: lift the child's address-space limit (chromium reserves terabytes).
    resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def _spawn(cmd: list[str], log: Path, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    with open(log, "ab") as fh:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_unlimited,
        )
    # Recorded at once, so that the harness can stop it even if this start is killed half-way.
    with open(log.parent / PIDFILE, "a") as fh:
        fh.write(f"{proc.pid}\n")
    return proc


def _wait_http(url: str, proc: subprocess.Popen[bytes], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(f"{what} exited with status {proc.returncode} while starting")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status < 500:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise StackError(f"{what} did not answer on {url} within {timeout:g} s")


@dataclass
class Stack:
    viewer: str
    orthanc: str
    cdp: str
    pids: list[int] = field(default_factory=list)
    #: The network namespace the stack lives in (a /proc path), or "" when it shares the host's.
    netns: str = ""
    #: The browser's process (its renderers and GPU process are its descendants): a read samples its memory.
    browser_pid: int = 0

    def endpoints(self) -> dict[str, str]:
        return {
            "viewer": self.viewer,
            "orthanc": self.orthanc,
            "cdp": self.cdp,
            "netns": self.netns,
            "browser_pid": str(self.browser_pid),
        }


_CLONE_NEWNET = 0x40000000


def private_network() -> bool:
    """Move this process into a network namespace of its own with only loopback up (needs root).

    Orthanc 1.10 listens on every interface and chromium's DevTools port answers any local process: in a
    namespace of their own, nothing of the stack can be reached from the host, by another machine or by
    another local process; only the calls that join the namespace (:func:`dicom4qi.adapters.child.join_network`)
    can. False, changing nothing, where the namespace cannot be made (not root); the stack then listens
    on loopback in the host's namespace (Orthanc refuses remote clients at the HTTP level).
    """
    if os.environ.get("DICOM4QI_NO_NETNS") or shutil.which("ip") is None:
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(_CLONE_NEWNET) != 0:
            return False
    except (OSError, AttributeError):
        return False
    up = subprocess.run(["ip", "link", "set", "lo", "up"], capture_output=True, text=True, check=False)
    if up.returncode != 0:
        raise StackError(f"cannot bring up loopback in the stack's network namespace: {up.stderr.strip()}")
    return True


def start_stack(version: str, workdir: Path, cache: Path) -> Stack:
    """Fetch the viewer if needed and start Orthanc, the same-origin server and chromium."""
    chromium = chromium_path()
    if chromium is None:
        raise StackError("chromium is not installed (Debian package chromium)")
    for path, pkg in ((ORTHANC, "orthanc"), (DICOMWEB_PLUGIN, "orthanc-dicomweb")):
        if not os.path.exists(path):
            raise StackError(f"{path} is missing (Debian package {pkg})")
    dist = ensure_viewer(version, cache)  # from the npm registry: before leaving the host's network
    workdir.mkdir(parents=True, exist_ok=True)
    isolated = private_network()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        o_port, v_port, c_port = free_port(), free_port(), free_port()
        storage = workdir / "orthanc-storage"
        storage.mkdir(exist_ok=True)
        config = {
            "Name": "dicom4qi",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "HttpPort": o_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomServerEnabled": False,
            "HttpCompressionEnabled": False,
            "Plugins": [DICOMWEB_PLUGIN],
            "DicomWeb": {
                "Enable": True,
                "Root": "/dicom-web/",
                "EnableWado": True,
                "WadoRoot": "/wado",
                "StudiesMetadata": "Full",
                "SeriesMetadata": "Full",
                "Host": f"127.0.0.1:{v_port}",
            },
        }
        (workdir / "orthanc.json").write_text(json.dumps(config, indent=1))
        orthanc = _spawn([ORTHANC, str(workdir / "orthanc.json")], workdir / "orthanc.log")
        procs.append(orthanc)
        proxy = _spawn(
            [
                sys.executable,
                "-m",
                "dicom4qi.tools.ohif.proxy",
                "--root",
                str(dist),
                "--port",
                str(v_port),
                "--upstream",
                f"http://127.0.0.1:{o_port}",
            ],
            workdir / "proxy.log",
            cwd=SUITE_ROOT,
        )
        procs.append(proxy)
        browser = _spawn(
            [
                chromium,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--mute-audio",
                f"--user-data-dir={workdir / 'chromium-profile'}",
                "--remote-debugging-address=127.0.0.1",
                f"--remote-debugging-port={c_port}",
                "--window-size=1280,900",
                "about:blank",
            ],
            workdir / "chromium.log",
        )
        procs.append(browser)
        _wait_http(f"http://127.0.0.1:{o_port}/system", orthanc, "Orthanc")
        _wait_http(f"http://127.0.0.1:{v_port}/index.html", proxy, "the viewer server")
        _wait_http(f"http://127.0.0.1:{c_port}/json/version", browser, "chromium")
        harness = os.environ.get("DICOM4QI_HARNESS")
        if harness:  # stops the stack when the harness is gone (killed), the parent-death signal cannot
            procs.append(
                _spawn(
                    [sys.executable, "-m", "dicom4qi.process.watchdog", harness, *(str(p.pid) for p in procs)],
                    workdir / "watchdog.log",
                    cwd=SUITE_ROOT,
                )
            )
    except BaseException:
        for p in procs:
            kill_group(p.pid)
        raise
    return Stack(
        viewer=f"http://127.0.0.1:{v_port}",
        orthanc=f"http://127.0.0.1:{o_port}",
        cdp=f"http://127.0.0.1:{c_port}",
        pids=[p.pid for p in procs],
        netns=f"/proc/{orthanc.pid}/ns/net" if isolated else "",
        browser_pid=browser.pid,
    )
