"""Names shared by every stage: head order, KuaiRec 2.0 file schemas, the 64 edge features."""
from __future__ import annotations

HEADS: tuple[str, ...] = ("complete", "long", "rewatch", "neg")
LABEL_COLUMNS: tuple[str, ...] = tuple(f"y_{h}" for h in HEADS)
WEIGHT_KEYS: tuple[str, ...] = tuple(f"w_{h}" for h in HEADS)
MISSING_ID = -124  # KuaiRec's marker for a missing category level
# Embedded planted-world sizes (datamodules.world.SIZES); here so that CLIs can check choices before heavy imports.
WORLD_SIZES: tuple[str, ...] = ("tiny", "small", "medium", "kuairec")

MATRIX_COLUMNS = ["user_id", "video_id", "play_duration", "video_duration", "time", "date", "timestamp", "watch_ratio"]
USER_COLUMNS = [
    "user_id", "user_active_degree", "is_lowactive_period", "is_live_streamer", "is_video_author",
    "follow_user_num", "follow_user_num_range", "fans_user_num", "fans_user_num_range",
    "friend_user_num", "friend_user_num_range", "register_days", "register_days_range",
] + [f"onehot_feat{i}" for i in range(18)]
CAPTION_COLUMNS = [
    "video_id", "manual_cover_text", "caption", "topic_tag",
    "first_level_category_id", "first_level_category_name",
    "second_level_category_id", "second_level_category_name",
    "third_level_category_id", "third_level_category_name",
]
ITEM_CATEGORY_COLUMNS = ["video_id", "feat"]
SOCIAL_COLUMNS = ["user_id", "friend_list"]
ITEM_DAILY_COLUMNS = [
    "video_id", "date", "author_id", "video_type", "upload_dt", "upload_type", "visible_status", "video_duration",
    "video_width", "video_height", "music_id", "video_tag_id", "video_tag_name", "show_cnt", "show_user_num",
    "play_cnt", "play_user_num", "play_duration", "complete_play_cnt", "complete_play_user_num", "valid_play_cnt",
    "valid_play_user_num", "long_time_play_cnt", "long_time_play_user_num", "short_time_play_cnt",
    "short_time_play_user_num", "play_progress", "comment_stay_duration", "like_cnt", "like_user_num",
    "click_like_cnt", "double_click_cnt", "cancel_like_cnt", "cancel_like_user_num", "comment_cnt",
    "comment_user_num", "direct_comment_cnt", "reply_comment_cnt", "delete_comment_cnt", "delete_comment_user_num",
    "comment_like_cnt", "comment_like_user_num", "follow_cnt", "follow_user_num", "cancel_follow_cnt",
    "cancel_follow_user_num", "share_cnt", "share_user_num", "download_cnt", "download_user_num", "report_cnt",
    "report_user_num", "reduce_similar_cnt", "reduce_similar_user_num", "collect_cnt", "collect_user_num",
    "cancel_collect_cnt", "cancel_collect_user_num",
]
ITEM_STATIC_COLUMNS = ITEM_DAILY_COLUMNS[2:13]  # author_id .. video_tag_name

RAW_FILES: dict[str, list[str]] = {
    "big_matrix.csv": MATRIX_COLUMNS,
    "small_matrix.csv": MATRIX_COLUMNS,
    "social_network.csv": SOCIAL_COLUMNS,
    "item_categories.csv": ITEM_CATEGORY_COLUMNS,
    "item_daily_features.csv": ITEM_DAILY_COLUMNS,
    "user_features.csv": USER_COLUMNS,
    "kuairec_caption_category.csv": CAPTION_COLUMNS,
}

# Level-1 categories of KuaiRec 2.0: id -> (name, video count in the real caption file).
LEVEL1_CATEGORIES: dict[int, tuple[str, int]] = {
    1: ("舞蹈", 422), 2: ("音乐", 191), 3: ("游戏", 105), 4: ("美妆", 153), 5: ("时尚", 1034), 6: ("明星娱乐", 473),
    7: ("运动", 317), 8: ("颜值", 824), 9: ("喜剧", 366), 10: ("旅游", 136), 11: ("生活", 417), 12: ("美食", 475),
    13: ("三农", 236), 14: ("教育", 60), 15: ("艺术", 309), 16: ("健康", 190), 17: ("宠物", 228), 18: ("汽车", 119),
    19: ("情感", 532), 20: ("二次元", 257), 21: ("人文", 50), 22: ("财经", 31), 23: ("时政资讯", 50),
    24: ("星座命理", 41), 25: ("亲子", 363), 26: ("摄影", 211), 27: ("高新数码", 42), 28: ("民生资讯", 1095),
    29: ("科学与法律", 82), 31: ("健身", 162), 32: ("短剧", 152), 33: ("自拍", 379), 34: ("其他", 914),
    35: ("军事", 77), 36: ("房产家居", 49), 37: ("奇人异象", 19), 38: ("读书", 65), 39: ("影视综", 62),
    MISSING_ID: ("UNKNOWN", 40),
}

# The 64 edge features, in the reference notebook's order.
U_COLUMNS = [f"u_{c}" for c in USER_COLUMNS[1:]] + [
    "u_follow_user_num_log1p", "u_fans_user_num_log1p", "u_friend_user_num_log1p", "u_register_days_log1p",
]
I_COLUMNS = [
    "i_aspect_ratio", "i_author_id", "i_video_type", "i_upload_type", "i_visible_status", "i_music_id",
    "i_video_tag_id", "i_video_tag_name", "i_video_duration", "i_age_since_upload_days",
    "i_cat_level1_id", "i_cat_level2_id", "i_cat_level3_id",
]
CTX_COLUMNS = ["ctx_hour", "ctx_dow", "ctx_is_weekend"]
HIST_COLUMNS = [
    "hist_ema_y_complete", "hist_ema_y_long", "hist_ema_y_rewatch", "hist_ema_y_neg", "hist_ema_watchratio",
    "hist_cat_ema_complete", "hist_cat_entropy_l2", "hist_author_recency_days", "hist_last_complete_author",
    "hist_has_author_history", "hist_prev_sess_len", "hist_intersess_gap_h",
]
SESSION_COLUMNS = ["burst_id", "session"] + CTX_COLUMNS + HIST_COLUMNS
FEATURE_NAMES: list[str] = ["burst_id", "session"] + U_COLUMNS + I_COLUMNS + CTX_COLUMNS + HIST_COLUMNS
# Counterfactual defaults for author-history features (the notebook's choice): no author history for a candidate.
AUTHOR_HISTORY_DEFAULTS = {
    "hist_has_author_history": 0.0,
    "hist_author_recency_days": 60.0,
    "hist_last_complete_author": 0.0,
}

assert len(U_COLUMNS) == 34 and len(I_COLUMNS) == 13 and len(SESSION_COLUMNS) == 17 and len(FEATURE_NAMES) == 64
