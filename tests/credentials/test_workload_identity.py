"""Kubernetes workload identity: the deployment's service account documents the TKE
annotations the OIDC source reads."""

from __future__ import annotations

from pathlib import Path

from tests.credentials.credentials_support import account


class TestKubernetesWorkloadIdentity:
    def test_the_deployment_runs_as_the_service_account_that_documents_the_tke_annotations(
        self,
    ) -> None:
        import yaml

        k8s = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
        account_text = (k8s / "serviceaccount.yaml").read_text(encoding="utf-8")
        service_account = yaml.safe_load(account_text)
        deployment = yaml.safe_load((k8s / "deployment.yaml").read_text(encoding="utf-8"))
        kustomization = yaml.safe_load((k8s / "kustomization.yaml").read_text(encoding="utf-8"))
        assert service_account["kind"] == "ServiceAccount"
        name = service_account["metadata"]["name"]
        assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == name
        assert "serviceaccount.yaml" in kustomization["resources"]
        for annotation in (
            "tke.cloud.tencent.com/role-arn",
            "tke.cloud.tencent.com/audience",
            "tke.cloud.tencent.com/token-expiration",
        ):
            assert annotation in account_text
        # the example role in the comment is one the configuration would accept
        arn = account_text.split('role-arn: "', 1)[1].split('"', 1)[0]
        assert account(role_arn=arn).role_arn == arn
