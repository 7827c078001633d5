"""Thresholds from the national standards the defaults cite.

Kept in one place so that each number has its source next to it.
"""

from __future__ import annotations

from typing import Literal

BuildingCategory = Literal[
    "residential_highrise",  # 高层住宅
    "residential_multistorey",  # 多层住宅
    "public_highrise_class1",  # 一类高层公共建筑
    "public_highrise_class1_over_100m",
    "public_highrise_class2",  # 二类高层公共建筑
    "public_multistorey",  # 多层公共建筑
]

# GB 50974-2014 §5.2.2: static pressure at the least favourable point of the indoor
# hydrant system, MPa. The standard's 0.07 also covers multi-storey residential here
# as the conservative reading (it sets no lower figure for them).
HYDRANT_MIN_STATIC_MPA: dict[str, float] = {
    "public_highrise_class1": 0.10,
    "public_highrise_class1_over_100m": 0.15,
    "residential_highrise": 0.07,
    "residential_multistorey": 0.07,
    "public_highrise_class2": 0.07,
    "public_multistorey": 0.07,
}
HYDRANT_STANDARD = "GB 50974-2014 §5.2.2"

# GB/T 24476-2017 elevator IoT fault/event categories (and the emergency call).
ELEVATOR_FAULTS: dict[str, str] = {
    "trapped_passenger": "困人",
    "door_open_while_moving": "开门走梯",
    "overrun_top": "冲顶",
    "overrun_bottom": "蹲底",
    "overspeed": "超速",
    "stop_outside_door_zone": "非平层停梯",
    "unintended_car_movement": "轿厢意外移动",
    "power_loss": "停电",
    "emergency_call": "紧急呼叫",
}
ELEVATOR_STANDARD = "GB/T 24476-2017"
