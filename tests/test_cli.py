"""The `spin` command as an owner meets it. `spin call` that cannot reach
the agent says where it looked and which
configuration told it so: on the demo machine there is no /etc/config/spin,
and "No such file or directory" alone sends the owner nowhere."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def spin_call(*argv):
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"))
    return subprocess.run([sys.executable, "-m", "spin_lite", "call"] + list(argv),
                          capture_output=True, text=True, env=env, timeout=60)


def test_a_missing_configuration_is_named_with_the_socket_tried(tmp_path):
    missing = str(tmp_path / "no-such-config")
    p = spin_call("-c", missing, "status")
    assert p.returncode == 10
    assert "/var/run/spin/rpc.sock" in p.stderr  # the default socket it tried
    assert "there is no %s" % missing in p.stderr and "-c CONFIG" in p.stderr
    assert p.stdout == ""


def test_the_configured_socket_is_named(tmp_path):
    conf = tmp_path / "spin"
    sock = tmp_path / "run" / "rpc.sock"
    conf.write_text("config spin 'main'\n\toption rpc_socket '%s'\n\toption ubus_socket '%s'\n"
                    % (sock, tmp_path / "no-ubusd.sock"))
    p = spin_call("-c", str(conf), "status")
    assert p.returncode == 10
    assert str(sock) in p.stderr and "(%s)" % conf in p.stderr, p.stderr


def test_the_demo_spin_command_calls_the_demo_agent(tmp_path):
    """The README's `spin call status` works, as written, beside `make demo`."""
    import json
    import types

    from tests.test_agent_micropython import wait_for, write_home
    from tests.world.demo import spin_command

    write_home(tmp_path)
    home = types.SimpleNamespace(dir=str(tmp_path), agent_config=str(tmp_path / "spin"))
    bindir = spin_command(home)
    agent = subprocess.Popen([sys.executable, str(tmp_path / "run.py")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        env = {"PATH": bindir + ":" + os.environ["PATH"]}
        status = wait_for(lambda: subprocess.run(["spin", "call", "status"], env=env, capture_output=True,
                                                 text=True, timeout=60).stdout, 60, "spin call status")
        assert json.loads(status)["version"]
    finally:
        agent.terminate()
        agent.wait(timeout=30)


def test_a_router_without_the_controller_package_says_which_to_install(tmp_path):
    # the spin package as a router has it: every module but the controller's
    import shutil
    lib = tmp_path / "spin_lite"
    shutil.copytree(os.path.join(ROOT, "src", "spin_lite"), str(lib),
                    ignore=shutil.ignore_patterns("controller.py", "scans.py", "__pycache__"))
    env = dict(os.environ, PYTHONPATH=str(tmp_path), PYTHONDONTWRITEBYTECODE="1")
    p = subprocess.run([sys.executable, "-m", "spin_lite", "controller", "-c", str(tmp_path / "x")],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 1
    assert "opkg install spin-controller" in p.stderr


def test_a_router_told_of_a_broker_without_the_mqtt_package_says_which_to_install(tmp_path):
    # the spin package alone: the owner set mqtt_broker but did not install
    # spin-mqtt; the agent still builds every other part and says why not
    import shutil
    lib = tmp_path / "spin_lite"
    shutil.copytree(os.path.join(ROOT, "src", "spin_lite"), str(lib),
                    ignore=shutil.ignore_patterns("mqtt.py", "mqttlink.py", "__pycache__"))
    env = dict(os.environ, PYTHONPATH=str(tmp_path), PYTHONDONTWRITEBYTECODE="1")
    script = ("import json\n"
              "from spin_lite import agent, config\n"
              "cfg = config.defaults(); cfg['mqtt_broker'] = 'nas.lan'\n"
              "a = agent.Agent(cfg); a.build_parts()\n"
              "print(json.dumps({'parts': [type(p).__name__ for p in a.parts],"
              " 'warnings': a.warnings, 'mqtt': a.mqtt_missing}))\n")
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert "Link" not in out["parts"] and "Blocks" in out["parts"] and "Anomalies" in out["parts"]
    assert "opkg install spin-mqtt" in out["mqtt"] and out["warnings"] == [out["mqtt"]]
    assert "opkg install spin-mqtt" in p.stderr
