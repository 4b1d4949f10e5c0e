"""Gates by registry name. Learned gates import torch lazily (at construction)."""

from gatekit.criteria.base import Criterion, action_gap
from gatekit.registry import Registry

CRITERIA = Registry("criterion")
CRITERIA.register("never", "gatekit.criteria.simple:NeverCriterion", "the novice always acts")
CRITERIA.register("always", "gatekit.criteria.simple:AlwaysCriterion", "the expert always acts")
CRITERIA.register("dagger", "gatekit.criteria.dagger:DAggerCriterion", "DAgger: execute the expert's action with probability beta")
CRITERIA.register("action-gap", "gatekit.criteria.simple:ActionGapCriterion", "human-gated: take over when the novice's action differs from the expert's")
CRITERIA.register("expert-likelihood", "gatekit.criteria.simple:ExpertLikelihoodCriterion", "human-gated (PVP): take over when the expert finds the novice's action unlikely")
CRITERIA.register("aim", "gatekit.criteria.aim:AIMCriterion", "AIM: learned proxy-Q gate, robot-gated")
CRITERIA.register("thrifty", "gatekit.criteria.thrifty:ThriftyCriterion", "Thrifty-DAgger: ensemble novelty + task-success risk, robot-gated")
CRITERIA.register("ensemble", "gatekit.criteria.ensemble:EnsembleCriterion", "Ensemble-DAgger: novice acts only when close to the expert and confident")
CRITERIA.register("hg", "gatekit.criteria.hg:HGDAggerCriterion", "HG-DAgger: human-gated by likelihood or action gap")
CRITERIA.register("human", "gatekit.criteria.human:HumanCriterion", "human-gated by a person: their key press takes over and hands back (expert keyboard)")
CRITERIA.register("safedagger", "gatekit.criteria.safedagger:SafeDAggerCriterion", "SafeDAgger: a classifier predicts when the novice is far from the expert")

__all__ = ["CRITERIA", "Criterion", "action_gap"]
