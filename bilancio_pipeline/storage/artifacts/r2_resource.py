"""dagster-aws's S3Resource with the client Cloudflare R2 accepts, for Dagster code.

S3Resource takes no botocore Config, so `get_client` builds the client from the resource's
fields with `s3.r2_client`, the one place the R2 client settings live. Kept apart from the
artifact store so the store (and the Modal containers that use it) needs boto3 only.
"""

from __future__ import annotations

from typing import Any

from dagster_aws.s3 import S3Resource

from bilancio_pipeline.storage.artifacts.s3 import r2_client


class R2S3Resource(S3Resource):
    def get_client(self) -> Any:
        return r2_client(
            self.endpoint_url, self.region_name, self.aws_access_key_id, self.aws_secret_access_key,
            self.max_attempts, profile_name=self.profile_name, use_ssl=self.use_ssl, verify=self.verify,
            session_token=self.aws_session_token, unsigned=self.use_unsigned_session,
        )
