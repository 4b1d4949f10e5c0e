"""The ``human`` gate: a person watching the novice decides, by a key, when to take over.

Human-gated interactive imitation (HG-DAgger's protocol with a real person): the novice drives
while the person watches; the person takes control whenever they judge it necessary and hands
it back when they are done. No rule of the robot moves control: the person's presses *are* the
gate. They reach the wrapper through the expert's ``claim_control`` (the keyboard expert's
control key, see :mod:`gatekit.experts.keyboard`), which answers instead of the criterion on the
steps where the person moves control; on every other step this criterion keeps control where it
is.

``human_gated`` is True: the person is asked to watch every step (the keyboard expert paces the
novice's steps at its ``fps`` and counts the watching time). Steps the person only watched carry
no expert label (``expert_queried`` is False): watching gives no action to learn from.

Example (a recipe):

.. code-block:: yaml

    expert: {id: keyboard}
    criterion: {id: human}
"""

from __future__ import annotations

from gatekit.criteria.base import Criterion
from gatekit.types import Decision, GateContext


class HumanCriterion(Criterion):
    """The person gates: control moves only when they press the control key.

    Needs an expert through which a person claims control (``claim_control``): the wrapper
    refuses any other expert when it is built, and a run with ``env.n_envs > 1`` refuses it.
    """

    name = "human"
    human_gated = True
    needs_person = True  # the wrapper checks that the expert has a person who can claim control

    def takeover(self, ctx: GateContext) -> Decision:
        return Decision(expert_acts=ctx.expert_in_control)  # whoever holds control keeps it

    def handback(self, ctx: GateContext) -> Decision:
        return Decision(expert_acts=ctx.expert_in_control)
