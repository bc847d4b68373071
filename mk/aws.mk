# The AWS flow (roles/balancer's ALB entry points, playbooks/aws_image_rollout.yml) against moto's server on loopback:
# target group deregister/register with the deregistration delay, a launch template version with a new AMI, the group
# pointed at it, and the instance refresh call; the ALB's HTTPS listener with a certificate imported into moto's ACM
# (roles/balancer's alb_https). The collections amazon.aws and community.aws come from PyPI's `ansible` package
# (requirements/aws_collections.py, cached in .cache/aws); lint needs them to resolve the modules.

AWS_COLLECTIONS_STAMP := $(CACHE)/aws/collections/.ansible-12.3.0

.PHONY: aws-collections test-aws

aws-collections: $(AWS_COLLECTIONS_STAMP) ## amazon.aws + community.aws for ansible-core 2.19 into .cache/aws (once)

$(AWS_COLLECTIONS_STAMP): requirements/aws_collections.py | venv
	$(BIN)/python requirements/aws_collections.py

lint: aws-collections

TEST_VM_TIERS += test-aws

test-aws: venv aws-collections ## the ALB drain/ready, HTTPS listener and AMI rollout flows against moto on loopback
	$(BIN)/pip install -q -r requirements/aws.txt
	$(BIN)/pytest tests/aws -p no:cacheprovider -s
