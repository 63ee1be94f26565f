"""fhir-safety: FHIR-native patient-safety decision support (CDS Hooks 2.0)."""

__version__ = "0.1.0"
__all__ = ["__version__"]
