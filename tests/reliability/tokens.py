"""A test CDS client (EHR) identity: an ES384 key, its JWKS, and JWTs signed with it."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

__all__ = ["TestIssuer"]


class TestIssuer:
    """Signs CDS Hooks client JWTs (CDS Hooks 2.0 "Trusting CDS Clients") for one ``iss``."""

    __test__ = False  # not a pytest test class

    def __init__(self, iss: str, kid: str = "reliability-1") -> None:
        self.iss = iss
        self.kid = kid
        self._key = ec.generate_private_key(ec.SECP384R1())

    def jwks(self) -> dict[str, Any]:
        jwk = ECAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        jwk.update(kid=self.kid, alg="ES384", use="sig")
        return {"keys": [jwk]}

    def token(
        self, aud: str, *, jti: str | None = None, lifetime: int = 300, issued: float | None = None
    ) -> str:
        """A fresh signed JWT for ``aud`` (the endpoint URL); a new ``jti`` unless given."""
        iat = int(issued if issued is not None else time.time())
        claims = {
            "iss": self.iss,
            "aud": aud,
            "iat": iat,
            "exp": iat + lifetime,
            "jti": jti or uuid.uuid4().hex,
            "sub": "reliability-test-client",
        }
        return jwt.encode(claims, self._key, algorithm="ES384", headers={"kid": self.kid})
