#!/usr/bin/env python3
"""Run a real Apache Kafka broker (KRaft), or a cluster of them, locally, without Docker.

The broker is the official Kafka 4.x server from Maven Central (see ``pom.xml``), started
with ``java -cp 'deploy/kafka/lib/*' kafka.Kafka server.properties``. Everything a broker
owns lives in one data dir::

    DIR/server.properties   rendered by this script
    DIR/logs/               log.dirs (KRaft metadata + topic data)
    DIR/server.log          INFO log (log4j2, see log4j2.properties)
    DIR/broker.out          the JVM's stdout/stderr (WARN and above)
    DIR/broker.pid          pid of the running broker

plus one shared, git-ignored cache next to the jars: ``lib/kafka-broker.jsa``, a class-data
archive written by the first broker that stops cleanly; it cuts later start-ups by ~1 s.

Command line::

    python deploy/kafka/local_kafka.py fetch
    python deploy/kafka/local_kafka.py start --port 9092 --controller-port 9093 \\
        --data-dir .run/kafka [--foreground]
    python deploy/kafka/local_kafka.py status --data-dir .run/kafka
    python deploy/kafka/local_kafka.py stop --data-dir .run/kafka
    python deploy/kafka/local_kafka.py start --brokers 3 --data-dir .run/kafka3  # ports
        # 9092/9093, 9094/9095, 9096/9097; data in DIR/node-1 .. node-3 (stop/status alike)

From Python (tests load this file with importlib; it imports only the stdlib and
kafka-python, never the project's packages)::

    broker = LocalKafka.on_free_ports(tmp_dir)   # or LocalKafka(dir, port, controller_port)
    broker.start()          # returns once the broker answers a metadata request
    use(broker.bootstrap)   # "127.0.0.1:<port>"
    broker.stop()
    cluster = LocalKafkaCluster.on_free_ports(tmp_dir, brokers=3)  # same methods, + kill(n)
    LocalKafka.on_free_ports(tmp_dir, sasl_ssl=SaslSslListener(port, keystore, users))
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

HERE = Path(__file__).resolve().parent
LIB_DIR = HERE / "lib"
POM = HERE / "pom.xml"
LOG4J_CONFIG = HERE / "log4j2.properties"

HOST = "127.0.0.1"
NODE_ID = 1
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
# Small heap: a test broker holds a few MB of data. G1 with short pauses as in Kafka's own
# kafka-run-class.sh; TieredStopAtLevel=1 (C1 only) cuts JIT work during start-up, which on a
# 2-core box is most of the start-up time, at the price of peak broker throughput we never
# reach because kafka-python clients are the bottleneck.
JVM_OPTS: tuple[str, ...] = (
    "-Xmx512m",
    "-Xms256m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExitOnOutOfMemoryError",
    "-XX:TieredStopAtLevel=1",
    "-Djava.awt.headless=true",
)
# AppCDS: the broker loads thousands of classes at start-up. The first broker started from a lib dir
# dumps the classes it loaded into a data-dir scratch archive when it exits; a clean stop
# promotes that to CDS_ARCHIVE_NAME in the lib dir, and later brokers map it instead of
# parsing jars (measured ~1 s, about a quarter of start-up on 2 cores). The JVM validates
# the archive against the JDK and classpath and ignores a stale one; a truncated one can
# crash the JVM, which is why only complete dumps are promoted and a broker that dies during
# start-up with the archive is retried once without it.
CDS_ARCHIVE_NAME = "kafka-broker.jsa"
CDS_QUIET: tuple[str, ...] = ("-Xlog:cds=off", "-Xlog:cds+dynamic=off")
# StorageTool format is a short-lived tool: C1 only and the serial collector start fastest.
TOOL_JVM_OPTS: tuple[str, ...] = ("-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")
SASL_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN")
SCRAM_JAAS = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
PLAIN_JAAS = "org.apache.kafka.common.security.plain.PlainLoginModule required"


class LocalKafkaError(RuntimeError):
    """The local broker could not be fetched, started, reached or stopped.

    The message says what failed and, for start-up failures, includes the tail of the
    broker's log so the cause is visible without opening files.
    """


def free_port(host: str = HOST) -> int:
    """Return a TCP port on ``host`` that was free a moment ago.

    Called by tests before ``LocalKafka(...)``. The port is released before returning, so
    another process could take it in between; that race is what "free" means here.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def free_ports(count: int, host: str = HOST) -> list[int]:
    """Return ``count`` distinct free ports (all sockets are held until all are chosen)."""
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(sock.getsockname()[1])
        return ports


def has_jars(lib_dir: Path = LIB_DIR) -> bool:
    """True when ``lib_dir`` already holds the Kafka broker jar (``kafka_2.13-*.jar``)."""
    return lib_dir.is_dir() and any(lib_dir.glob("kafka_2.13-*.jar"))


def fetch_jars(lib_dir: Path = LIB_DIR, *, force: bool = False) -> bool:
    """Copy the broker's runtime jars into ``lib_dir`` with Maven, unless already there.

    Called by ``fetch`` and, lazily, by :meth:`LocalKafka.start`. Returns True when Maven
    ran, False when the cached jars were used. ``force`` empties ``lib_dir`` of jars first
    (for a changed ``pom.xml``). Maven's own cache (``~/.m2``) makes later
    fetches offline. Raises LocalKafkaError when ``mvn`` is not on PATH or Maven fails.
    """
    if has_jars(lib_dir) and not force:
        return False
    # A new classpath invalidates the shared class archive built from the old one, and
    # jars of an older pinned version must not stay on the classpath next to the new ones.
    (lib_dir / CDS_ARCHIVE_NAME).unlink(missing_ok=True)
    if force and lib_dir.is_dir():
        for jar in lib_dir.glob("*.jar"):
            jar.unlink()
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LocalKafkaError(
            f"mvn not found on PATH: install Maven (apt-get install maven) to fetch the Kafka "
            f"jars into {lib_dir}, or copy them there from a machine that has them"
        )
    cmd = [
        mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
        "-DincludeScope=runtime", f"-DoutputDirectory={lib_dir}",
    ]  # fmt: skip
    result = subprocess.run(cmd, cwd=HERE, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not has_jars(lib_dir):
        output = (result.stdout + result.stderr).strip()
        raise LocalKafkaError(
            f"mvn copy-dependencies failed (exit {result.returncode}):\n{_tail_text(output)}"
        )
    return True


def random_cluster_id() -> str:
    """Return a new KRaft cluster id, as ``kafka-storage.sh random-uuid`` would.

    Same format as Kafka's ``Uuid.randomUuid().toString()``: URL-safe base64 of 16 random
    bytes without padding, re-drawn when it would start with '-' (awkward on command
    lines) or collide with Kafka's reserved all-zero / one ids. Done in Python because
    ``StorageTool random-uuid`` costs a whole JVM start (~0.6 s) for 22 characters.
    """
    while True:
        raw = uuid.uuid4().bytes
        text = base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")
        if not text.startswith("-") and int.from_bytes(raw, "big") > 1:
            return text


@dataclass(frozen=True)
class SaslSslListener:
    """A SASL_SSL client listener next to the PLAINTEXT one (tests of secured clusters).

    ``keystore`` is a PEM file with the broker's unencrypted PKCS#8 private key followed by
    its certificate chain; clients must trust the CA that signed it. ``scram_users`` (name ->
    password) get SCRAM-SHA-256 and SCRAM-SHA-512 credentials at format time (kafka-storage
    ``--add-scram``); ``plain_users`` are PLAIN credentials in the listener's JAAS line.
    The PLAINTEXT listener stays for inter-broker traffic and the readiness probe.
    """

    port: int
    keystore: Path
    scram_users: Mapping[str, str] = field(default_factory=dict)
    plain_users: Mapping[str, str] = field(default_factory=dict)

    def properties(self, host: str) -> dict[str, str]:
        """The broker settings of this listener (merged into ``server.properties``)."""
        plain = " ".join(f'user_{u}="{pw}"' for u, pw in self.plain_users.items())
        prefix = "listener.name.sasl_ssl"
        return {
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.keystore),
            "ssl.client.auth": "none",
            "sasl.enabled.mechanisms": ",".join(SASL_MECHANISMS),
            f"{prefix}.scram-sha-256.sasl.jaas.config": SCRAM_JAAS,
            f"{prefix}.scram-sha-512.sasl.jaas.config": SCRAM_JAAS,
            f"{prefix}.plain.sasl.jaas.config": f"{PLAIN_JAAS} {plain};",
        }

    def format_args(self) -> list[str]:
        """kafka-storage ``format`` arguments that add the SCRAM users."""
        args: list[str] = []
        for user, password in self.scram_users.items():
            for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
                args += ["--add-scram", f"{mechanism}=[name={user},password={password}]"]
        return args


def render_server_properties(
    *,
    port: int,
    controller_port: int,
    log_dir: Path,
    host: str = HOST,
    node_id: int = NODE_ID,
    voters: Sequence[tuple[int, int]] = (),
    sasl_ssl: SaslSslListener | None = None,
) -> str:
    """Render ``server.properties`` for a combined broker + controller KRaft node.

    Pure function, called by :meth:`LocalKafka.start`; unit-tested. Without ``voters`` the
    node is a single-node cluster (every replication factor 1). With ``voters`` (node id,
    controller port) of all nodes of a cluster, the quorum is static and internal topics
    are replicated min(3, nodes) times with min.insync.replicas one less, so the cluster
    survives the loss of one node. Internal topics get few partitions and group rebalances
    start at once so that a fresh broker serves its first consumer group quickly.
    """
    listeners = [f"PLAINTEXT://{host}:{port}", f"CONTROLLER://{host}:{controller_port}"]
    protocols = "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    if sasl_ssl is not None:
        listeners.append(f"SASL_SSL://{host}:{sasl_ssl.port}")
        protocols += ",SASL_SSL:SASL_SSL"
    replicas = min(3, len(voters)) if voters else 1
    min_isr = max(1, replicas - 1)
    settings: dict[str, str | int] = {
        "process.roles": "broker,controller",
        "node.id": node_id,
    }
    if voters:
        settings["controller.quorum.voters"] = ",".join(f"{n}@{host}:{p}" for n, p in voters)
    else:
        settings["controller.quorum.bootstrap.servers"] = f"{host}:{controller_port}"
    settings |= {
        "listeners": ",".join(listeners),
        "advertised.listeners": ",".join(listeners),
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": protocols,
        "log.dirs": str(log_dir),
        "default.replication.factor": replicas,
        "min.insync.replicas": min_isr,
        "offsets.topic.replication.factor": replicas,
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": min_isr,
        # Fast first use: internal topics are created lazily by the first consumer group or
        # transaction, and with the default 50 partitions each that costs seconds.
        "offsets.topic.num.partitions": 4,
        "transaction.state.log.num.partitions": 4,
        "share.coordinator.state.topic.num.partitions": 4,
        "group.initial.rebalance.delay.ms": 0,
        "num.partitions": 3,
        "auto.create.topics.enable": "true",
        "delete.topic.enable": "true",
        # Bounded disk: a local broker must not fill the disk if left running.
        "log.retention.hours": 24,
        "log.retention.bytes": 1024 * 1024 * 1024,
        "log.segment.bytes": 64 * 1024 * 1024,
        "log.retention.check.interval.ms": 60_000,
        # The cleaner's default 128 MiB dedupe buffer would be a quarter of the heap.
        "log.cleaner.dedupe.buffer.size": 32 * 1024 * 1024,
        "num.network.threads": 3,
        "num.io.threads": 4,
    }
    if sasl_ssl is not None:
        settings |= sasl_ssl.properties(host)
    lines = ["# Rendered by deploy/kafka/local_kafka.py; edits are overwritten on start."]
    lines += [f"{key}={value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


class LocalKafka:
    """One local broker bound to a data dir and two loopback ports.

    ``start()`` is called once (by the CLI or a test fixture) and blocks until the broker
    answers a metadata request; ``stop()`` is called at the end and is safe to call when
    the broker is not running. A broker started by one process (``start`` in the CLI) can
    be stopped by another, because the pid is kept in ``DIR/broker.pid``.
    """

    def __init__(
        self,
        data_dir: Path | str,
        port: int,
        controller_port: int,
        *,
        host: str = HOST,
        lib_dir: Path = LIB_DIR,
        java: str = "java",
        jvm_opts: Sequence[str] = JVM_OPTS,
        class_data_sharing: bool = True,
        node_id: int = NODE_ID,
        voters: Sequence[tuple[int, int]] = (),
        sasl_ssl: SaslSslListener | None = None,
    ) -> None:
        """``node_id`` and ``voters`` (node id, controller port of every node) make this node
        part of a :class:`LocalKafkaCluster`; ``sasl_ssl`` adds a secured client listener."""
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.controller_port = controller_port
        self.host = host
        self.lib_dir = lib_dir
        self.java = java
        self.jvm_opts = tuple(jvm_opts)
        self.class_data_sharing = class_data_sharing
        self.node_id = node_id
        self.voters = tuple(voters)
        self.sasl_ssl = sasl_ssl
        #: Set by a cluster so that all its nodes are formatted with one cluster id.
        self.cluster_id: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def on_free_ports(cls, data_dir: Path | str, **kwargs: Any) -> LocalKafka:
        """Build a broker on two distinct free loopback ports (for tests).

        ``kwargs`` are the keyword-only options of ``LocalKafka(...)``.
        """
        port, controller_port = free_ports(2)
        return cls(data_dir, port, controller_port, **kwargs)

    @classmethod
    def from_data_dir(cls, data_dir: Path | str) -> LocalKafka:
        """Rebuild the handle of a broker configured earlier (used by ``stop``/``status``).

        Reads the ports back from ``DIR/server.properties``; raises LocalKafkaError when the
        data dir was never used by ``start``.
        """
        props_path = Path(data_dir).resolve() / "server.properties"
        if not props_path.is_file():
            raise LocalKafkaError(f"{props_path} not found: no broker was started there")
        props = _read_properties(props_path)
        listeners = dict(
            item.split("://", 1) for item in props.get("listeners", "").split(",") if item
        )
        try:
            host, port = listeners["PLAINTEXT"].rsplit(":", 1)
            controller_port = listeners["CONTROLLER"].rsplit(":", 1)[1]
        except (KeyError, IndexError) as exc:
            raise LocalKafkaError(f"{props_path}: unexpected listeners setting") from exc
        node_id = int(props.get("node.id", NODE_ID))
        return cls(data_dir, int(port), int(controller_port), host=host, node_id=node_id)

    # Paths ------------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """``host:port`` for ``bootstrap_servers``."""
        return f"{self.host}:{self.port}"

    @property
    def properties_path(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def pid_path(self) -> Path:
        return self.data_dir / "broker.pid"

    @property
    def console_log(self) -> Path:
        return self.data_dir / "broker.out"

    @property
    def server_log(self) -> Path:
        return self.data_dir / "server.log"

    @property
    def cds_archive(self) -> Path:
        return self.lib_dir / CDS_ARCHIVE_NAME

    @property
    def cds_dump(self) -> Path:
        return self.data_dir / "broker.jsa.tmp"

    # Lifecycle --------------------------------------------------------------------------

    def start(self, timeout_s: float = START_TIMEOUT_S) -> float:
        """Start the broker in the background and block until it serves metadata.

        Fetches the jars when missing, writes ``server.properties``, formats the storage on
        first use, launches the JVM in its own process group and polls with a metadata
        request until the broker lists itself as an unfenced node. Returns the seconds that
        took. When a broker from this data dir is already running it only waits for it.

        Raises LocalKafkaError (with the log tail) when the JVM exits early or the broker
        is not ready within ``timeout_s`` (a JVM this call launched is stopped first), or
        when a broker of this data dir is already running on other ports.
        """
        started = time.monotonic()
        launched, used_archive = self.launch()
        self.await_ready(started + timeout_s, launched=launched, used_archive=used_archive)
        return time.monotonic() - started

    def launch(self) -> tuple[bool, bool]:
        """First half of :meth:`start`: configure, format and launch without waiting.

        Returns (launched, used_archive) for :meth:`await_ready`; launched is False when a
        broker of this data dir was already running. A cluster launches all its nodes
        before waiting for any, since no node is ready before a quorum is up.
        """
        if self.running_pid() is not None:
            self._check_running_ports()
            return False, False
        fetch_jars(self.lib_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._check_formatted_ports()
        self.properties_path.write_text(
            render_server_properties(
                port=self.port,
                controller_port=self.controller_port,
                log_dir=self.log_dir,
                host=self.host,
                node_id=self.node_id,
                voters=self.voters,
                sasl_ssl=self.sasl_ssl,
            )
        )
        if not (self.log_dir / "meta.properties").is_file():
            self._format_storage()
        return True, self._launch()

    def await_ready(self, deadline: float, *, launched: bool, used_archive: bool) -> None:
        """Second half of :meth:`start`: block until ready (monotonic ``deadline``)."""
        try:
            try:
                self._wait_ready(deadline)
            except BrokerExitedError:
                if not used_archive:
                    raise
                # Most likely a damaged class-data archive: drop it and start without it.
                self.cds_archive.unlink(missing_ok=True)
                self._launch()
                self._wait_ready(deadline)
        except (LocalKafkaError, KeyboardInterrupt):
            if launched:  # never kill a broker this call did not start
                self.stop()
            raise

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> bool:
        """Stop the broker: SIGTERM (controlled shutdown), then SIGKILL after ``timeout_s``.

        Called at the end of a test session or by the ``stop`` command. Returns True when a
        running broker was stopped, False when none was running. Raises LocalKafkaError
        only if the process survives SIGKILL.
        """
        pid = self.running_pid()
        if pid is None:
            self.pid_path.unlink(missing_ok=True)
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if self._wait_exit(pid, time.monotonic() + timeout_s):
            self._promote_cds_dump()
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if not self._wait_exit(pid, time.monotonic() + 10.0):
                raise LocalKafkaError(f"broker pid {pid} survived SIGKILL")
        self.cds_dump.unlink(missing_ok=True)
        self.pid_path.unlink(missing_ok=True)
        self._proc = None
        return True

    def running_pid(self) -> int | None:
        """Pid of this data dir's broker if it is alive, else None.

        The pid file alone is not trusted: the process must still be a ``kafka.Kafka`` JVM
        using this data dir's server.properties, so a recycled pid is never signalled.
        """
        if self._proc is not None and self._proc.poll() is None:
            return self._proc.pid
        try:
            pid = int(self.pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        if Path("/proc/self").exists():
            try:
                args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                return None
            wanted = str(self.properties_path).encode()
            if b"kafka.Kafka" not in args or wanted not in args:
                return None
            return pid
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return pid

    def is_ready(self, timeout_s: float = 2.0) -> bool:
        """True when the broker answers a metadata request listing itself, unfenced."""
        return self._probe(timeout_s)

    def wait(self) -> int:
        """Block until the broker process exits (``--foreground``); return its exit code."""
        if self._proc is None:
            raise LocalKafkaError("wait() needs a broker started by this process")
        return self._proc.wait()

    def log_tail(self, lines: int = 40) -> str:
        """Last lines of the console and server logs, for error messages."""
        parts: list[str] = []
        for path in (self.console_log, self.server_log):
            if path.is_file():
                text = path.read_text(errors="replace")
                parts.append(f"--- {path} (tail) ---\n{_tail_text(text, lines)}")
        return "\n".join(parts) or "(no broker log written)"

    # Internals --------------------------------------------------------------------------

    def _java_cmd(self, jvm_opts: Sequence[str], main_class: str, *args: str) -> list[str]:
        return [
            self.java,
            *jvm_opts,
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            # Kafka's own shutdown hook logs the controlled shutdown; log4j's hook would
            # stop the appenders first and cut those lines off.
            "-Dlog4j2.shutdownHookEnabled=false",
            f"-Dkafka.logs.dir={self.data_dir}",
            "-cp",
            str(self.lib_dir / "*"),
            main_class,
            *args,
        ]

    def _check_formatted_ports(self) -> None:
        # The KRaft voter set (with the controller endpoint) is written at format time, so a
        # formatted data dir cannot silently move to another controller port.
        if not (self.log_dir / "meta.properties").is_file() or not self.properties_path.is_file():
            return
        previous = LocalKafka.from_data_dir(self.data_dir)
        if previous.controller_port != self.controller_port:
            raise LocalKafkaError(
                f"{self.data_dir} was formatted for controller port {previous.controller_port},"
                f" not {self.controller_port}: reuse that port or use a fresh data dir"
            )

    def _check_running_ports(self) -> None:
        running = LocalKafka.from_data_dir(self.data_dir)
        if (running.port, running.controller_port) != (self.port, self.controller_port):
            raise LocalKafkaError(
                f"a broker from {self.data_dir} is already running on ports {running.port}/"
                f"{running.controller_port}; stop it first to use {self.port}/"
                f"{self.controller_port}"
            )

    def _format_storage(self) -> None:
        # A static quorum (controller.quorum.voters) is formatted without --standalone.
        tool_args = ["format", *([] if self.voters else ["--standalone"])]
        tool_args += ["-t", self.cluster_id or random_cluster_id()]
        tool_args += ["-c", str(self.properties_path)]
        if self.sasl_ssl is not None:
            tool_args += self.sasl_ssl.format_args()
        attempts: list[list[str]] = [list(TOOL_JVM_OPTS)]
        if self.class_data_sharing and self.cds_archive.is_file():
            # The broker's archive also holds most of the tool's classes (~0.3 s saved).
            archive = [f"-XX:SharedArchiveFile={self.cds_archive}", *CDS_QUIET]
            attempts.insert(0, [*TOOL_JVM_OPTS, *archive])
        failure = ""
        for opts in attempts:
            cmd = self._java_cmd(opts, "kafka.tools.StorageTool", *tool_args)
            result = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if result.returncode == 0:
                return
            output = _tail_text((result.stdout + result.stderr).strip())
            failure = f"exit {result.returncode}:\n{output}"
        raise LocalKafkaError(f"kafka StorageTool format failed ({failure})")

    def _launch(self) -> bool:
        """Launch the broker JVM; return True when it maps the shared class archive."""
        opts = list(self.jvm_opts)
        use_archive = self.class_data_sharing and self.cds_archive.is_file()
        self.cds_dump.unlink(missing_ok=True)
        if use_archive:
            opts += [f"-XX:SharedArchiveFile={self.cds_archive}", *CDS_QUIET]
        elif self.class_data_sharing:
            opts += [f"-XX:ArchiveClassesAtExit={self.cds_dump}", *CDS_QUIET]
        cmd = self._java_cmd(opts, "kafka.Kafka", str(self.properties_path))
        with self.console_log.open("ab") as out:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,  # Ctrl-C in the caller's terminal must not hit it
            )
        self.pid_path.write_text(f"{self._proc.pid}\n")
        return use_archive

    def _promote_cds_dump(self) -> None:
        # Called only after a clean exit, when the JVM has finished writing the dump.
        # Copy + rename keeps the lib-dir archive complete even with concurrent brokers.
        if not self.cds_dump.is_file() or self.cds_archive.is_file():
            return
        scratch = self.lib_dir / f"{CDS_ARCHIVE_NAME}.{os.getpid()}.tmp"
        try:
            shutil.copyfile(self.cds_dump, scratch)
            scratch.replace(self.cds_archive)
        except OSError:
            scratch.unlink(missing_ok=True)

    def _wait_ready(self, deadline: float) -> None:
        while True:
            if self.running_pid() is None:
                code = self._proc.poll() if self._proc is not None else None
                raise BrokerExitedError(
                    f"broker exited during start-up (exit {code}):\n{self.log_tail()}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LocalKafkaError(
                    f"broker on {self.bootstrap} not ready before the deadline:\n{self.log_tail()}"
                )
            if self._probe(min(2.0, remaining)):
                return
            time.sleep(0.1)  # poll interval between probes

    def _probe(self, timeout_s: float) -> bool:
        # A cheap connect first: building a client against a closed port costs its timeout.
        try:
            with socket.create_connection((self.host, self.port), timeout=timeout_s):
                pass
        except OSError:
            return False
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        timeout_ms = max(int(timeout_s * 1000), 100)
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap,
                client_id="local-kafka-probe",
                request_timeout_ms=timeout_ms,
                bootstrap_timeout_ms=timeout_ms,
            )
        except KafkaError:
            return False
        try:
            cluster = admin.describe_cluster()
        except KafkaError:
            return False
        finally:
            admin.close()
        return any(
            broker.get("broker_id") == self.node_id and not broker.get("is_fenced", False)
            for broker in cluster.get("brokers", [])
        )

    def _wait_exit(self, pid: int, deadline: float) -> bool:
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.pid == pid:
                try:
                    self._proc.wait(timeout=0.1)
                    return True
                except subprocess.TimeoutExpired:
                    continue
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            if _is_zombie(pid):
                return True
            time.sleep(0.1)  # poll interval
        return False


class LocalKafkaCluster:
    """Several combined broker + controller nodes with a static KRaft quorum.

    Node ``n`` lives in ``DIR/node-<n>`` (a :class:`LocalKafka` data dir each). With three
    nodes, topics and internal topics can have three replicas and the cluster keeps working
    when one node is killed (``kill(n)``) - which is what the broker-loss tests do.
    """

    def __init__(self, data_dir: Path | str, nodes: Sequence[LocalKafka]) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.nodes = list(nodes)
        cluster_id = random_cluster_id()
        for node in self.nodes:
            node.cluster_id = cluster_id

    @classmethod
    def on_free_ports(
        cls, data_dir: Path | str, brokers: int = 3, **kwargs: Any
    ) -> LocalKafkaCluster:
        """``brokers`` nodes on free loopback ports (two each); ``kwargs`` go to each node."""
        ports = free_ports(2 * brokers)
        return cls.on_ports(data_dir, ports[:brokers], ports[brokers:], **kwargs)

    @classmethod
    def on_ports(
        cls, data_dir: Path | str, ports: Sequence[int], controller_ports: Sequence[int],
        **kwargs: Any,
    ) -> LocalKafkaCluster:
        """Nodes 1..n on the given client and controller ports."""
        voters = [(n, p) for n, p in enumerate(controller_ports, start=1)]
        root = Path(data_dir)
        nodes = [
            LocalKafka(root / f"node-{n}", port, cport, node_id=n, voters=voters, **kwargs)
            for (n, cport), port in zip(voters, ports, strict=True)
        ]
        return cls(root, nodes)

    @classmethod
    def from_data_dir(cls, data_dir: Path | str) -> LocalKafkaCluster:
        """The cluster configured earlier in ``data_dir`` (for ``stop`` and ``status``)."""
        dirs = sorted(Path(data_dir).glob("node-*"))
        if not dirs:
            raise LocalKafkaError(f"{data_dir}: no node-* directories: no cluster started there")
        return cls(data_dir, [LocalKafka.from_data_dir(d) for d in dirs])

    @property
    def bootstrap(self) -> str:
        """Every node's ``host:port``, comma-separated."""
        return ",".join(node.bootstrap for node in self.nodes)

    def start(self, timeout_s: float = START_TIMEOUT_S) -> float:
        """Launch every node, then wait until each is ready; return the seconds taken.

        A node that fails stops the nodes this call launched and raises LocalKafkaError.
        """
        started = time.monotonic()
        launched: list[tuple[LocalKafka, tuple[bool, bool]]] = []
        try:
            for node in self.nodes:
                launched.append((node, node.launch()))
            for node, (was_launched, archive) in launched:
                node.await_ready(
                    started + timeout_s, launched=was_launched, used_archive=archive
                )
        except (LocalKafkaError, KeyboardInterrupt):
            for node, (was_launched, _) in launched:
                if was_launched:
                    node.stop()
            raise
        return time.monotonic() - started

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> bool:
        """Stop every node (controlled shutdown); True when any was running."""
        stopped = [node.stop(timeout_s) for node in reversed(self.nodes)]  # stop all of them
        return any(stopped)

    def kill(self, node_id: int) -> None:
        """SIGKILL one node, as a crashed machine would go (no controlled shutdown)."""
        node = self.nodes[node_id - 1]
        pid = node.running_pid()
        if pid is None:
            raise LocalKafkaError(f"node {node_id} is not running")
        os.kill(pid, signal.SIGKILL)
        if not node._wait_exit(pid, time.monotonic() + 10.0):
            raise LocalKafkaError(f"node {node_id} (pid {pid}) survived SIGKILL")
        node.pid_path.unlink(missing_ok=True)
        node._proc = None

    def running_pids(self) -> list[int | None]:
        return [node.running_pid() for node in self.nodes]


class BrokerExitedError(LocalKafkaError):
    """The broker JVM exited before it became ready."""


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def _read_properties(path: Path) -> dict[str, str]:
    props: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")) and "=" in line:
            key, value = line.split("=", 1)
            props[key.strip()] = value.strip()
    return props


def _tail_text(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


# CLI ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so ``--foreground`` stops the broker either way."""

    def _raise(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _cmd_fetch(args: argparse.Namespace) -> int:
    ran = fetch_jars(force=args.force)
    print(f"jars {'fetched into' if ran else 'already in'} {LIB_DIR}")
    return 0


def _cmd_start(args: argparse.Namespace) -> int:
    if args.brokers > 1:
        return _cmd_start_cluster(args)
    broker = LocalKafka(args.data_dir, args.port, args.controller_port)
    # In the foreground, SIGTERM and Ctrl-C stop the broker, also while it is starting.
    with _stop_on_signals() if args.foreground else contextlib.nullcontext():
        try:
            elapsed = broker.start(timeout_s=args.timeout)
            print(
                f"kafka ready on {broker.bootstrap} (pid {broker.running_pid()}, "
                f"{elapsed:.1f} s, data dir {broker.data_dir})",
                flush=True,
            )
            if not args.foreground:
                return 0
            code = broker.wait()
        except KeyboardInterrupt:
            print("stopping kafka ...", flush=True)
            broker.stop()
            return 0
    print(f"kafka exited with code {code}:\n{broker.log_tail()}", file=sys.stderr)
    broker.pid_path.unlink(missing_ok=True)
    return 1


def _cmd_start_cluster(args: argparse.Namespace) -> int:
    # Node n listens on port + 2(n-1) and controller_port + 2(n-1): 9092/9093, 9094/9095, ...
    offsets = range(0, 2 * args.brokers, 2)
    cluster = LocalKafkaCluster.on_ports(
        args.data_dir, [args.port + o for o in offsets], [args.controller_port + o for o in offsets]
    )
    with _stop_on_signals() if args.foreground else contextlib.nullcontext():
        try:
            elapsed = cluster.start(timeout_s=args.timeout)
            print(f"kafka cluster of {args.brokers} ready on {cluster.bootstrap} "
                  f"({elapsed:.1f} s, data dir {cluster.data_dir})", flush=True)
            if args.foreground:
                cluster.nodes[0].wait()
                print("node 1 exited; stopping the others", file=sys.stderr)
                cluster.stop()
                return 1
        except KeyboardInterrupt:
            print("stopping kafka ...", flush=True)
            cluster.stop()
    return 0


def _is_cluster_dir(data_dir: Path) -> bool:
    return any(Path(data_dir).glob("node-*/server.properties"))


def _cmd_stop(args: argparse.Namespace) -> int:
    if _is_cluster_dir(args.data_dir):
        stopped = LocalKafkaCluster.from_data_dir(args.data_dir).stop(timeout_s=args.timeout)
        print("kafka cluster stopped" if stopped else "kafka cluster was not running")
        return 0
    try:
        broker = LocalKafka.from_data_dir(args.data_dir)
    except LocalKafkaError:
        print(f"no broker configured in {args.data_dir}")
        return 0
    stopped = broker.stop(timeout_s=args.timeout)
    print("kafka stopped" if stopped else "kafka was not running")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    if _is_cluster_dir(args.data_dir):
        nodes = LocalKafkaCluster.from_data_dir(args.data_dir).nodes
        states = [n.running_pid() is not None and n.is_ready() for n in nodes]
        for node, ok in zip(nodes, states, strict=True):
            print(f"node {node.node_id} on {node.bootstrap}: {'ready' if ok else 'NOT ready'}")
        return 0 if all(states) else 2
    broker = LocalKafka.from_data_dir(args.data_dir)
    pid = broker.running_pid()
    if pid is None:
        print(f"kafka not running (data dir {broker.data_dir})")
        return 1
    ready = broker.is_ready()
    print(f"kafka pid {pid} on {broker.bootstrap}: {'ready' if ready else 'NOT answering'}")
    return 0 if ready else 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="local_kafka.py",
        description="Run Apache Kafka (KRaft), one node or a cluster, locally without Docker.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    fetch = sub.add_parser("fetch", help=f"copy the broker jars into {LIB_DIR} with Maven")
    fetch.add_argument("--force", action="store_true", help="run Maven even if jars exist")
    fetch.set_defaults(func=_cmd_fetch)

    start = sub.add_parser("start", help="start the broker and wait until it is ready")
    start.add_argument("--port", type=int, default=9092, help="client port (default 9092)")
    start.add_argument(
        "--controller-port", type=int, default=9093, help="KRaft controller port (default 9093)"
    )
    start.add_argument("--data-dir", type=Path, required=True, help="config, data and logs")
    start.add_argument(
        "--brokers", type=int, default=1,
        help="nodes (default 1); node n uses port and controller port + 2(n-1)",
    )
    start.add_argument(
        "--timeout", type=float, default=START_TIMEOUT_S, help="seconds to wait for readiness"
    )
    start.add_argument(
        "--foreground", action="store_true", help="stay attached; Ctrl-C/SIGTERM stops it"
    )
    start.set_defaults(func=_cmd_start)

    stop = sub.add_parser("stop", help="stop the broker of a data dir (SIGTERM, then SIGKILL)")
    stop.add_argument("--data-dir", type=Path, required=True)
    stop.add_argument(
        "--timeout", type=float, default=STOP_TIMEOUT_S, help="seconds before SIGKILL"
    )
    stop.set_defaults(func=_cmd_stop)

    status = sub.add_parser("status", help="exit 0 if running and ready, 1 if not running")
    status.add_argument("--data-dir", type=Path, required=True)
    status.set_defaults(func=_cmd_status)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except LocalKafkaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
