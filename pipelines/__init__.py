"""Video pipelines and experiment configs, installed as ``timeclr.pipelines``."""
