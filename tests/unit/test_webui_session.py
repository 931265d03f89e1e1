"""The page's turn logic without a browser: which uploads are videos, the message order, the
throttled stream, and a failed turn leaving the conversation as it was."""
from paddle_qwenvl.webui.backends import Answer, AnswerStats, Settings
from paddle_qwenvl.webui.session import media_kind, respond, throttled, user_message

SETTINGS = Settings(temperature=0.0, top_p=1.0, top_k=0, max_new_tokens=4)
STATS = AnswerStats(prompt_tokens=5, completion_tokens=3, cached_tokens=0, ttft=0.1, tokens_per_second=2.0,
                    finish_reason="length")


def test_videos_are_told_from_images_by_suffix():
    assert [media_kind(p) for p in ("/up/a.MP4", "clip.webm", "photo.jpg", "scan.png", "noext")] == \
        ["video", "video", "image", "image", "image"]


def test_a_user_message_keeps_upload_order_then_the_text():
    assert user_message("hi", ["a.png", "b.mp4"]) == {"role": "user", "content": [
        {"type": "image", "image": "a.png"}, {"type": "video", "video": "b.mp4"}, {"type": "text", "text": "hi"}]}


def test_throttled_keeps_the_first_and_the_last_and_closing_it_closes_the_stream():
    closed = []

    def answers():
        try:
            yield from [Answer("a"), Answer("ab"), Answer("abc"), Answer("abcd", STATS)]
        finally:
            closed.append(True)
    assert [a.text for a in throttled(answers(), seconds=3600)] == ["a", "abcd"]
    early = throttled(answers(), seconds=0)
    next(early)
    early.close()                  # what Stop does: the backend's stream is closed (the request aborted)
    assert closed == [True, True]


class FailingBackend:
    def stream(self, messages, settings):
        raise ValueError("the data is not an image")


class EchoBackend:
    def stream(self, messages, settings):
        text = messages[-1]["content"][-1]["text"]
        yield Answer(text[:1])
        yield Answer(text, STATS)


def test_a_failed_turn_leaves_both_histories_and_names_the_file():
    shown, messages = [{"role": "user", "content": "hello"}], [{"role": "user", "content": "hello"}]
    turns = list(respond(FailingBackend(), "what is it?", ["/up/broken.jpg"], shown, messages, SETTINGS))
    assert len(turns) == 1 and turns[0].shown is shown and turns[0].messages is messages
    assert "not an image" in turns[0].error and "broken.jpg" in turns[0].error


def test_a_turn_streams_then_adds_the_answer_with_its_stats():
    turns = list(respond(EchoBackend(), "  hello  ", [], [], [], SETTINGS))
    assert turns[-1].messages == [user_message("hello", []), {"role": "assistant", "content": "hello"}]
    assert turns[-1].shown[-1] == {"role": "assistant", "content": "hello"}
    assert "generated 3 tokens" in turns[-1].stats and turns[0].stats == ""


def test_an_empty_message_asks_for_a_question():
    turn, = respond(EchoBackend(), " ", [], [], [], SETTINGS)
    assert turn.error.startswith("Type a question") and turn.messages == []
