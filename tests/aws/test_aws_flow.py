"""The AWS flow against moto's server on loopback: ALB target group drain/ready per instance, and an AMI rollout.

moto (PyPI moto[server]) answers the AWS APIs on 127.0.0.1; its request recorder lists every call the playbooks made,
so the report says which AWS calls were exercised. What moto does not model is said too: a deregistered target is
`unused` at once (no real draining during the deregistration delay), and StartInstanceRefresh is not implemented
in moto 5.2.5, so the refresh task is tested to be reached and the call itself is reported as not exercised; moto
also ignores CreateLaunchTemplateVersion's SourceVersion (AWS copies the other settings from it): not checked.
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import botocore.config
import botocore.exceptions
import botocore.parsers
import pytest

from tests.aws.conftest import BIN, KEYS, REGION, calls, client, playbook
from tests.conftest import REPO

GROUP = "shop"
DELAY = 5


@pytest.fixture(scope="module")
def world(moto: tuple[str, Path]) -> dict[str, object]:
    """An ASG of two instances from a launch template, registered in an ALB target group with a 5 s delay."""
    url, recording = moto
    ec2, elbv2, autoscaling = (client(url, s) for s in ("ec2", "elbv2", "autoscaling"))
    subnet = ec2.describe_subnets()["Subnets"][0]
    base_ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    template = {"ImageId": base_ami, "InstanceType": "t3.micro"}
    ec2.create_launch_template(LaunchTemplateName=GROUP, LaunchTemplateData=template)
    target_group = elbv2.create_target_group(
        Name=GROUP, Protocol="HTTP", Port=80, VpcId=subnet["VpcId"], HealthCheckPath="/"
    )["TargetGroups"][0]["TargetGroupArn"]
    elbv2.modify_target_group_attributes(
        TargetGroupArn=target_group, Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": str(DELAY)}]
    )
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=GROUP,
        LaunchTemplate={"LaunchTemplateName": GROUP, "Version": "$Default"},
        MinSize=2,
        MaxSize=4,
        DesiredCapacity=2,
        VPCZoneIdentifier=subnet["SubnetId"],
        TargetGroupARNs=[target_group],
    )
    instances = [
        i["InstanceId"] for i in autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"][0]["Instances"]
    ]
    # The new AMI: an image of one of the instances, as Packer's amazon-ebs builder would register one.
    new_ami = ec2.create_image(InstanceId=instances[0], Name="shop-2")["ImageId"]
    recording.write_text("")
    return {"url": url, "recording": recording, "target_group": target_group, "instances": instances, "ami": new_ami}


def _health(url: str, target_group: str) -> dict[str, str]:
    answer = client(url, "elbv2").describe_target_health(TargetGroupArn=target_group)
    return {t["Target"]["Id"]: t["TargetHealth"]["State"] for t in answer["TargetHealthDescriptions"]}


def test_alb_drain_and_ready_roll_instance_by_instance(world: dict[str, object], tmp_path: Path) -> None:
    url, instances, recording = world["url"], world["instances"], world["recording"]
    inventory = {
        "web": {
            "hosts": {i: {"instance_id": i} for i in instances},
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": str(BIN / "python"),
                "balancer_alb_target_groups": [GROUP],
                "balancer_alb_region": REGION,
                "balancer_ready_timeout": 30,
                "balancer_alb_wait_margin": 5,
            },
        }
    }
    (tmp_path / "hosts.json").write_text(json.dumps(inventory))
    recording.write_text("")
    run = playbook(url, "-i", str(tmp_path / "hosts.json"), str(Path(__file__).with_name("alb_rolling.yml")))
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert _health(url, world["target_group"]) == dict.fromkeys(instances, "healthy")
    made = calls(recording)
    print(f"ALB drain/ready over {len(instances)} instances: AWS calls {dict(made)}")
    assert made["DeregisterTargets"] == len(instances), made
    assert made["RegisterTargets"] == len(instances), made
    assert made["DescribeTargetGroupAttributes"] >= len(instances), made
    assert made["DescribeTargetHealth"] >= 2 * len(instances), made


def _rollout_args(world: dict[str, object]) -> list[str]:
    """The rollout playbook's variables for the emulated group, its launch template and the new AMI."""
    names = {"aws_asg_name": GROUP, "aws_launch_template_name": GROUP, "aws_ami_id": world["ami"]}
    return [arg for name, value in names.items() for arg in ("-e", f"{name}={value}")]


def test_an_ami_rollout_makes_a_template_version_with_the_ami_the_groups_default(world: dict[str, object]) -> None:
    url, recording = world["url"], world["recording"]
    recording.write_text("")
    args = _rollout_args(world)
    run = playbook(url, str(REPO / "playbooks" / "aws_image_rollout.yml"), *args, "-e", "aws_instance_refresh=false")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    ec2, autoscaling = client(url, "ec2"), client(url, "autoscaling")
    default = ec2.describe_launch_template_versions(LaunchTemplateName=GROUP, Versions=["$Default"])
    version = default["LaunchTemplateVersions"][0]
    assert version["VersionNumber"] == 2
    assert version["LaunchTemplateData"]["ImageId"] == world["ami"]
    # AWS copies the other settings from SourceVersion; moto 5.2.5 ignores SourceVersion, so that is not checked here.
    group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])["AutoScalingGroups"][0]
    assert group["LaunchTemplate"]["Version"] == "$Default"
    made = calls(recording)
    print(f"AMI rollout (refresh off): AWS calls {dict(made)}")
    assert made["CreateLaunchTemplateVersion"] == 1, made
    assert made["ModifyLaunchTemplate"] == 1, made


def test_the_instance_refresh_task_is_reached_and_moto_does_not_implement_it(world: dict[str, object]) -> None:
    url, recording = world["url"], world["recording"]
    recording.write_text("")
    args = _rollout_args(world)
    run = playbook(url, str(REPO / "playbooks" / "aws_image_rollout.yml"), *args)
    made = calls(recording)
    print(f"AMI rollout (refresh on): rc {run.returncode}, AWS calls {dict(made)}")
    assert "Start an instance refresh" in run.stdout, run.stdout[-3000:]
    once = botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"})
    autoscaling = boto3.client("autoscaling", endpoint_url=url, region_name=REGION, config=once, **KEYS)
    try:
        autoscaling.start_instance_refresh(AutoScalingGroupName=GROUP)
    except (botocore.exceptions.ClientError, botocore.parsers.ResponseParserError) as error:
        pytest.skip(f"moto does not implement StartInstanceRefresh ({type(error).__name__}): not exercised")
    assert run.returncode == 0, run.stdout[-4000:]
