"""The balancer role's alb_https entry point against moto: an ALB's HTTPS listener with a certificate from ACM.

The world: two ALBs in the default VPC's first two subnets, each with a plain-HTTP listener on port 80 forwarding to
the target group `shop`, and a self-signed certificate imported into moto's ACM (what an operator's ACM certificate
is to the ALB: an ARN). moto checks that a listener's certificate exists in ACM (or IAM) and that a ModifyListener's
policy is one it lists; it negotiates no TLS and serves no redirect, so what the policy and the redirect do is AWS's
documented behaviour, not tested here. The calls each run made are printed (moto's request recorder).
"""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from moto.elbv2.ssl_policies import SSL_POLICIES

from tests.aws.conftest import REGION, calls, client, playbook
from tests.conftest import REPO

PLAY = str(Path(__file__).with_name("alb_https.yml"))
DOMAIN = "shop.example.com"
GROUP = "shop"
DEFAULTS = yaml.safe_load((REPO / "roles" / "balancer" / "defaults" / "main.yml").read_text())
REDIRECT = {
    "Protocol": "HTTPS",
    "Port": "443",
    "Host": "#{host}",
    "Path": "/#{path}",
    "Query": "#{query}",
    "StatusCode": "HTTP_301",
}
WRITES = ("Create", "Modify", "Delete", "Set", "Add", "Remove", "Register", "Deregister")


def _self_signed(domain: str) -> tuple[bytes, bytes]:
    """A P-256 key and a certificate for DOMAIN signed by it, valid for 90 days, in PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


@pytest.fixture(scope="module")
def alb(moto: tuple[str, Path]) -> dict[str, object]:
    """ALBs `shop` and `shop-b`, port 80 forwarding to the target group `shop`, and the certificate in ACM."""
    url, recording = moto
    ec2, elbv2, acm = (client(url, s) for s in ("ec2", "elbv2", "acm"))
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"][:2]
    group = ec2.create_security_group(GroupName="shop-alb", Description="the ALB: 80 and 443 from anywhere", VpcId=vpc)
    target_group = elbv2.create_target_group(Name=GROUP, Protocol="HTTP", Port=80, VpcId=vpc, HealthCheckPath="/")[
        "TargetGroups"
    ][0]["TargetGroupArn"]
    balancers = {}
    for name in ("shop", "shop-b"):
        balancers[name] = elbv2.create_load_balancer(
            Name=name, Subnets=[s["SubnetId"] for s in subnets], SecurityGroups=[group["GroupId"]], Type="application"
        )["LoadBalancers"][0]["LoadBalancerArn"]
        elbv2.create_listener(
            LoadBalancerArn=balancers[name],
            Protocol="HTTP",
            Port=80,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": target_group}],
        )
    certificate, key = _self_signed(DOMAIN)
    arn = acm.import_certificate(Certificate=certificate, PrivateKey=key)["CertificateArn"]
    recording.write_text("")
    return {
        "url": url,
        "recording": recording,
        "balancers": balancers,
        "target_group": target_group,
        "certificate": arn,
        "cidrs": ",".join(sorted(s["CidrBlock"] for s in subnets)),
    }


def _run(alb: dict[str, object], tmp_path: Path, *args: str, **extra: object) -> tuple[str, int, dict[str, int]]:
    """The entry point (ARGS, EXTRA variables) over the ALB `shop` and the certificate: output, rc, AWS calls made."""
    variables = {
        "balancer_alb_name": "shop",
        "balancer_alb_certificate_arn": alb["certificate"],
        "balancer_alb_target_groups": [GROUP],
        "balancer_alb_region": REGION,
        **extra,
    }
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    alb["recording"].write_text("")
    run = playbook(alb["url"], PLAY, "-e", f"@{tmp_path / 'vars.json'}", *args)
    return run.stdout + run.stderr, run.returncode, dict(calls(alb["recording"]))


def _writes(made: dict[str, int]) -> list[str]:
    """The calls among MADE that change something at AWS."""
    return [call for call in made if call.startswith(WRITES)]


def _said(output: str, text: str) -> bool:
    """Whether OUTPUT says TEXT, across the line folds of Ansible's YAML output."""
    return text in " ".join(output.split())


def _changed(output: str) -> int:
    return int(re.search(r"localhost\s*:.*changed=(\d+)", output).group(1))


def _listeners(alb: dict[str, object], name: str) -> dict[int, dict[str, object]]:
    answer = client(alb["url"], "elbv2").describe_listeners(LoadBalancerArn=alb["balancers"][name])
    return {listener["Port"]: listener for listener in answer["Listeners"]}


def test_https_on_443_with_the_certificate_and_policy_and_port_80_redirecting(
    alb: dict[str, object], tmp_path: Path
) -> None:
    output, rc, made = _run(alb, tmp_path)
    print(f"alb_https, first run: AWS calls {made}")
    assert rc == 0, output[-4000:]
    assert _changed(output) == 1, output[-2000:]
    listeners = _listeners(alb, "shop")
    https, http = listeners[443], listeners[80]
    assert https["Protocol"] == "HTTPS"
    assert https["SslPolicy"] == DEFAULTS["balancer_alb_ssl_policy"] == "ELBSecurityPolicy-TLS13-1-2-Res-2021-06"
    assert [c["CertificateArn"] for c in https["Certificates"]] == [alb["certificate"]]
    assert [(a["Type"], a["TargetGroupArn"]) for a in https["DefaultActions"]] == [("forward", alb["target_group"])]
    assert http["Protocol"] == "HTTP"
    assert [(a["Type"], a["RedirectConfig"]) for a in http["DefaultActions"]] == [("redirect", REDIRECT)]
    assert sorted(listeners) == [80, 443]
    in_use = client(alb["url"], "acm").describe_certificate(CertificateArn=alb["certificate"])["Certificate"]
    assert in_use["InUseBy"], in_use
    assert _said(output, f"set FORWARDED_ALLOW_IPS={alb['cidrs']} for the apps behind it"), output[-2000:]
    assert made["CreateListener"] == 1 and made["ModifyListener"] == 1, made


def test_a_second_run_changes_nothing(alb: dict[str, object], tmp_path: Path) -> None:
    output, rc, made = _run(alb, tmp_path)
    print(f"alb_https, second run: AWS calls {made}")
    assert rc == 0, output[-4000:]
    assert _changed(output) == 0, output[-2000:]
    assert not _writes(made), made


ARN = "arn:aws:acm:us-east-1:123456789012:certificate/{id}"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("balancer_alb_certificate_arn", ""),
        ("balancer_alb_certificate_arn", "arn:aws:iam::123456789012:server-certificate/shop"),
        ("balancer_alb_certificate_arn", ARN.replace("us-east-1", "eu-west-1")),
        ("balancer_alb_certificate_arn", ARN + "\n"),
        ("balancer_alb_certificate_arn", ARN.replace("123456789012", "12345")),
        ("balancer_alb_certificate_arn", ARN.format(id="shop")),
        ("balancer_alb_certificate_arn", [ARN]),
        ("balancer_alb_ssl_policy", "ELBSecurityPolicy-2016-08"),
        ("balancer_alb_ssl_policy", "ELBSecurityPolicy-TLS13-1-1-2021-06"),
        ("balancer_alb_name", "-shop"),
        ("balancer_alb_target_groups", []),
        ("balancer_alb_region", "us-east-1; true"),
    ],
)
def test_a_bad_value_is_refused_before_any_aws_call(
    alb: dict[str, object], tmp_path: Path, name: str, value: object
) -> None:
    certificate_id = alb["certificate"].rsplit("/", 1)[-1]
    value = [v.format(id=certificate_id) for v in value] if isinstance(value, list) else value.format(id=certificate_id)
    output, rc, made = _run(alb, tmp_path, **{name: value})
    # The message names the variable and its value (no target groups leave balancer_alb_https_target_group's default
    # empty: that one is named).
    refused = "balancer_alb_https_target_group=" if name == "balancer_alb_target_groups" else f"{name}={value}".strip()
    assert rc != 0 and _said(output, f"{refused} is invalid: expected"), output[-3000:]
    assert made == {}, made


def test_the_policy_check_takes_exactly_the_policies_of_tls_1_2_and_later() -> None:
    """Against moto's copy of AWS's policy table (the protocols each offers), the pattern alb_https checks with."""
    tasks = yaml.safe_load((REPO / "roles" / "balancer" / "tasks" / "alb_https.yml").read_text())
    checks = {check["name"]: check for check in tasks[0]["block"][0]["loop"]}
    pattern = checks["balancer_alb_ssl_policy"]["pattern"]
    wrong = {
        name: policy["ssl_protocols"]
        for name, policy in SSL_POLICIES.items()
        if bool(re.fullmatch(pattern, name)) != {"TLSv1", "TLSv1.1"}.isdisjoint(policy["ssl_protocols"])
    }
    assert len(SSL_POLICIES) > 10 and wrong == {}, wrong


def test_what_aws_or_the_apps_would_not_take_is_refused_before_any_change(
    alb: dict[str, object], tmp_path: Path
) -> None:
    elbv2 = client(alb["url"], "elbv2")
    unknown = re.sub(r"/[0-9a-f-]+$", "/00000000-0000-4000-8000-000000000000", alb["certificate"])
    pending = client(alb["url"], "acm").request_certificate(DomainName=DOMAIN, ValidationMethod="DNS")["CertificateArn"]
    port80 = _listeners(alb, "shop-b")[80]["ListenerArn"]
    rule = elbv2.create_rule(
        ListenerArn=port80,
        Priority=10,
        Conditions=[{"Field": "path-pattern", "Values": ["/api/*"]}],
        Actions=[{"Type": "forward", "TargetGroupArn": alb["target_group"]}],
    )["Rules"][0]["RuleArn"]
    cases = [
        ({"balancer_alb_name": "nosuch"}, "balancer_alb_name=nosuch is invalid: no Application Load Balancer"),
        ({"balancer_alb_https_target_group": "nosuch"}, "balancer_alb_https_target_group=nosuch is invalid"),
        ({"balancer_alb_certificate_arn": unknown}, f"_arn={unknown} is invalid: ACM has no certificate with that ARN"),
        ({"balancer_alb_certificate_arn": pending}, "its status is PENDING_VALIDATION, expected ISSUED"),
        ({"balancer_alb_name": "shop-b"}, "port-80 listener has rules (priority 10)"),
    ]
    for extra, refused in cases:
        output, rc, made = _run(alb, tmp_path, **extra)
        print(f"alb_https refused ({refused}): AWS calls {made}")
        assert rc != 0 and _said(output, refused), output[-3000:]
        assert not _writes(made), made
    elbv2.delete_rule(RuleArn=rule)
    elbv2.modify_load_balancer_attributes(
        LoadBalancerArn=alb["balancers"]["shop-b"],
        Attributes=[{"Key": "routing.http.xff_header_processing.mode", "Value": "preserve"}],
    )
    output, rc, made = _run(alb, tmp_path, balancer_alb_name="shop-b")
    print(f"alb_https refused (xff_header_processing.mode=preserve): AWS calls {made}")
    assert rc != 0 and _said(output, "routing.http.xff_header_processing.mode=preserve and"), output[-3000:]
    assert not _writes(made), made
    elbv2.modify_load_balancer_attributes(
        LoadBalancerArn=alb["balancers"]["shop-b"],
        Attributes=[{"Key": "routing.http.xff_header_processing.mode", "Value": "append"}],
    )


def test_check_mode_reports_the_change_and_makes_none(alb: dict[str, object], tmp_path: Path) -> None:
    before = _listeners(alb, "shop-b")
    output, rc, made = _run(alb, tmp_path, "--check", balancer_alb_name="shop-b")
    print(f"alb_https --check: AWS calls {made}")
    assert rc == 0, output[-4000:]
    assert _changed(output) == 1, output[-2000:]
    assert _listeners(alb, "shop-b") == before
    assert not _writes(made), made


def test_without_the_redirect_port_80_is_left_as_it_was(alb: dict[str, object], tmp_path: Path) -> None:
    before = _listeners(alb, "shop-b")[80]
    output, rc, made = _run(alb, tmp_path, balancer_alb_name="shop-b", balancer_https_redirect=False)
    print(f"alb_https without the redirect: AWS calls {made}")
    assert rc == 0, output[-4000:]
    assert _said(output, "port 80 left as it was"), output[-2000:]
    listeners = _listeners(alb, "shop-b")
    assert listeners[80] == before
    assert listeners[443]["Certificates"][0]["CertificateArn"] == alb["certificate"]
    assert made["CreateListener"] == 1 and "ModifyListener" not in made, made
