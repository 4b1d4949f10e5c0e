"""stable-baselines3 policies as gatekit :class:`Expert` objects, loaded without running pickles.

One expert class, :class:`SB3PolicyExpert`, acts with and scores actions under an SB3 policy.
Two registered loaders build it from a file:

* :func:`sb3_zip` (registry name ``sb3``) reads a model zip written by ``model.save(...)``
  (PPO, A2C, SAC, TD3, DDPG, DQN; SB3 2.x, SB3 1.x and forks of it);
* :func:`sb3_state_dict` (``sb3-policy``) reads a bare state dict
  (``torch.save(model.policy.state_dict(), "policy.pth")``).

Safe loading. An SB3 zip stores some entries of its ``data`` JSON (the policy class, the
spaces, schedules, often ``policy_kwargs``) as base64 cloudpickle, and ``PPO.load`` unpickles
them: a crafted zip runs arbitrary code the moment it is loaded. So by default nothing in a
zip is unpickled. ``data`` is parsed as JSON and only the human-readable fields SB3 writes next
to each pickle are read (the policy class's ``__module__``, the spaces' shapes and bounds, the
``policy_kwargs`` items as text); the weights come from ``policy.pth`` through
``torch.load(weights_only=True)``. The policy is rebuilt from the env's spaces and from the
tensors' names and shapes (hidden layer sizes, critics, gSDE, CNN feature sizes), then loaded
strictly. The activation, which no tensor records, comes from the readable ``policy_kwargs``,
else from the recipe's ``activation``, else SB3's default for the algorithm. The full SB3 path
(``PPO.load``, unpickling everything) runs only with ``trust_pickle: true``.

Actions come from the policy's ``predict(obs, deterministic=...)``, so an expert acts exactly
as the SB3 model it was saved from. Likelihoods (:meth:`SB3PolicyExpert.log_prob`) come from
the policy's action distribution (PPO, A2C: ``policy.get_distribution(obs).log_prob(action)``;
SAC: its squashed Gaussian actor). TD3, DDPG and DQN have no distribution: their experts have
``has_log_prob = False``.

Randomness. SB3 samples actions with torch's global generator. A stochastic expert
(``deterministic: false``) keeps its own torch generator state instead: each act swaps it
in, samples, and swaps the global state back, so the expert's samples depend only on its seed
(``reset(seed=...)``) and sampling never shifts the novice's or the learner's torch random
stream. Building the policy does not consume the global stream either. A stochastic DQN expert
draws its epsilon-greedy coin from :attr:`Expert.np_random` (SB3 uses numpy's global generator).

Models are loaded on the CPU: an expert acts on one observation at a time, where a GPU only
adds transfer latency.

Example:
    >>> from stable_baselines3 import PPO                          # doctest: +SKIP
    >>> from gatekit.envs import ENVS                              # doctest: +SKIP
    >>> env = ENVS.get("cartpole")(split="test")                   # doctest: +SKIP
    >>> PPO("MlpPolicy", env).learn(2048).save("ppo_cartpole.zip")  # doctest: +SKIP
    >>> expert = sb3_zip(env=env, path="ppo_cartpole.zip")         # doctest: +SKIP
    >>> obs, _ = env.reset(seed=0); expert.reset(seed=0)           # doctest: +SKIP
    >>> action = expert.act(obs)                                   # doctest: +SKIP
    >>> expert.log_prob(obs, action)                               # doctest: +SKIP

In a recipe::

    expert:
      id: sb3
      path: runs/ppo_expert_metadrive/expert.zip
      deterministic: false
      algo: ppo          # needed only for zips of SB3 forks (policy class outside stable_baselines3)
"""

from gatekit.experts.sb3.architecture import infer_policy_kwargs
from gatekit.experts.sb3.archive import (
           SB3Zip,
           check_model_spaces,
           detect_algo,
           model_observation_space,
           read_sb3_zip,
           readable,
)
from gatekit.experts.sb3.expert import ACTIVATIONS, ALGOS, Algo, SB3PolicyExpert, activation_class
from gatekit.experts.sb3.loaders import sb3_state_dict, sb3_zip

__all__ = ["ACTIVATIONS", "ALGOS", "Algo", "SB3PolicyExpert", "SB3Zip", "activation_class", "check_model_spaces",
           "detect_algo", "infer_policy_kwargs", "model_observation_space", "read_sb3_zip", "readable",
           "sb3_state_dict", "sb3_zip"]
