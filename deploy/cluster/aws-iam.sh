#!/usr/bin/env bash
# The head node's IAM role and instance profile, remax-ray-head, that deploy/cluster/aws.yaml names
# (head node_config IamInstanceProfile). Once per AWS account, with the AWS CLI and credentials that
# may manage IAM; safe to run again:
#   bash deploy/cluster/aws-iam.sh
# Why: the autoscaler on the head launches the GPU workers with the head's credentials, and EC2
# resolves their `ImageId: resolve:ssm:...` with the launcher's ssm:GetParameters. The role Ray makes
# when a config names no profile (ray-autoscaler-v1) has AmazonEC2FullAccess and AmazonS3FullAccess
# only, so every worker launch would be refused. This role gets EC2 (the autoscaler's part) plus
# ssm:GetParameters on AWS's public Deep Learning AMI parameters; not S3, which nothing here uses. The
# workers get no profile, so the head needs no iam:PassRole.
set -euo pipefail
name=remax-ray-head
trust='{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
  "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}'
# Public parameters live under /aws/service; their ARNs have no account ID.
read_ami='{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ssm:GetParameters",
  "Resource": "arn:aws:ssm:*:*:parameter/aws/service/deeplearning/*"}]}'

if ! aws iam get-role --role-name "$name" >/dev/null 2>&1; then
  aws iam create-role --role-name "$name" --assume-role-policy-document "$trust" >/dev/null
fi
aws iam attach-role-policy --role-name "$name" --policy-arn arn:aws:iam::aws:policy/AmazonEC2FullAccess
aws iam put-role-policy --role-name "$name" --policy-name read-deep-learning-ami-parameters \
  --policy-document "$read_ami"
if ! aws iam get-instance-profile --instance-profile-name "$name" >/dev/null 2>&1; then
  aws iam create-instance-profile --instance-profile-name "$name" >/dev/null
fi
roles=$(aws iam get-instance-profile --instance-profile-name "$name" \
  --query 'InstanceProfile.Roles[].RoleName' --output text)
case " $roles " in
  *" $name "*) ;;
  *) aws iam add-role-to-instance-profile --instance-profile-name "$name" --role-name "$name" ;;
esac
echo "instance profile $name: ready (IAM takes a few seconds to propagate before \`ray up\`)"
