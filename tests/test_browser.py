"""The answer browser (tunejudge.analysis.browser, results/browser.html) in a real headless Chromium (Debian's
chromium and chromium-driver, driven by Selenium; no browser is downloaded): filters change what is shown,
an item shows every model's answer and verdict, hostile answers are shown as text and run nothing, and
the time to first paint at 10,000 answer rows is printed.

The ``chrome`` fixture (conftest) skips where chromium is missing, fails there under CI
(TUNEJUDGE_REQUIRE_BROWSER=1)."""

import json
import os
import shutil
import time

from conftest import REPO, open_page, visible_rows

from tunejudge.analysis.browser import browser_data, embed_json, render

HOSTILE = ['<script>window.__pwned = 1</script>', '<img src=x onerror="window.__pwned = 2">',
           '</script><script>window.__pwned = 3</script>', "\u2028 and & and ]]> and <!--"]
METRICS = ["FactualCorrectness", "InstructionAdherence", "ClarityUtility"]


def dataset(n_items: int, models=("base", "full", "small"), seed: int = 0, hostile: bool = True):
    """A run's data as the rule builds it: items across two sources, every model's answer and verdicts,
    controls, pairwise rows in both orders, a panel judge."""
    import random

    rng = random.Random(seed)
    responses, judge, ref, controls, pairwise, panel = [], [], [], [], [], []
    for k in range(n_items):
        iid, src = f"item{k:05d}", "sst2" if k % 2 else "qa_squad"
        row = {"id": iid, "source": src, "instruction": f"Instruction {k}", "input": f"input text {k}",
               "output": f"reference {k}"}
        for j, m in enumerate(models):
            row[f"model {m}"] = HOSTILE[k % len(HOSTILE)] if hostile and m == "full" and k < 8 else f"{m} answers {k}"
            for metric in METRICS:
                s = rng.randint(0, 5) if m != "base" else 1.0
                judge.append({"id": iid, "source": src, "model": m, "metric": metric, "score_5": float(s),
                              "reason": f"{m} reason {k} <b>not bold</b>"})
                panel.append({"id": iid, "source": src, "model": m, "metric": metric, "score_5": float(5 - s)})
            ref.append({"id": iid, "model": m, "headline": "label_accuracy", "label_accuracy": float(j % 2)})
        for arm in ("control:positive", "control:negative"):
            controls.append({"id": iid, "source": src, "model": arm, "metric": METRICS[0],
                             "score_5": 5.0 if arm.endswith("positive") else 0.0, "reason": arm})
        pairwise.append({"id": iid, "a": "full", "b": "base", "metric": METRICS[0], "verdict": "a",
                         "consistent": k % 3 != 0, "first": "A", "second": "B" if k % 3 else "A",
                         "reason": "A is better", "reason_swapped": "B is better"})
        responses.append(row)
    labels = {m: f"label of {m}" for m in models}
    return browser_data(responses, labels, judge, ref, controls, pairwise, {"mini": panel}, METRICS,
                        {"config_files": ["config/config.yaml"], "judge": "local/SmolLM2"})


def test_the_embedded_json_cannot_end_its_script_element():
    text = embed_json({"a": HOSTILE})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"a": HOSTILE}
    page = render(dataset(4))
    assert page.count("</script>") == 2 and "window.__pwned" in page  # the texts are in, as data


def test_filters_items_verdicts_and_hostile_text_in_chromium(chrome, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    page = tmp_path / "browser.html"
    page.write_text(render(dataset(40)), encoding="utf-8")
    open_page(chrome, page)
    assert chrome.find_element(By.ID, "count").text == "40 of 40 items"
    assert "config/config.yaml" in chrome.find_element(By.ID, "run").text
    Select(chrome.find_element(By.ID, "f-source")).select_by_value("sst2")
    assert chrome.find_element(By.ID, "count").text == "20 of 40 items"
    Select(chrome.find_element(By.ID, "f-model")).select_by_value("full")
    Select(chrome.find_element(By.ID, "f-versus")).select_by_value("base")
    Select(chrome.find_element(By.ID, "f-outcome")).select_by_value("win")
    wins = visible_rows(chrome)
    data = dataset(40)
    expected = [it["id"] for it in data["items"] if it["source"] == "sst2"
                and sum(it["scores"]["full"][m][0] for m in METRICS) > sum(it["scores"]["base"][m][0] for m in METRICS)]
    assert wins == expected and 0 < len(wins) < 20
    # one item: every model's answer and every verdict; the hostile answers are text
    open_page(chrome, page, "#item=item00000")
    answers = chrome.find_elements(By.CSS_SELECTOR, "#detail .answer")
    assert [a.get_attribute("data-model") for a in answers] == ["base", "full", "small"]
    full = chrome.find_element(By.CSS_SELECTOR, '#detail .answer[data-model="full"] .answer-text').text
    assert full == HOSTILE[0]
    assert "full reason 0 <b>not bold</b>" in chrome.find_element(By.ID, "detail").text
    assert chrome.find_elements(By.CSS_SELECTOR, "#detail .pairwise tr") and chrome.find_elements(By.CSS_SELECTOR, "#detail .controls")
    assert chrome.find_elements(By.CSS_SELECTOR, "#detail td.disagree")  # the panel judge disagrees: marked
    assert "(order flipped it)" in chrome.find_element(By.ID, "detail").text  # item 0: inconsistent pairwise
    for k in range(1, 4):
        open_page(chrome, page, f"#item=item{k:05d}")
        text = chrome.execute_script(
            "return document.querySelector('#detail .answer[data-model=\"full\"] .answer-text').textContent")
        assert text == HOSTILE[k]  # exactly the characters of the answer
    assert chrome.execute_script("return window.__pwned === undefined")  # nothing in an answer ran
    assert not chrome.find_elements(By.CSS_SELECTOR, "#detail img")
    shot = REPO / "docs" / "browser.png"
    open_page(chrome, page, "#item=item00004")
    chrome.save_screenshot(str(tmp_path / "browser.png"))
    if os.environ.get("TUNEJUDGE_SCREENSHOTS"):  # `make screenshots` refreshes the README's picture
        shutil.copyfile(tmp_path / "browser.png", shot)


def test_first_paint_at_10000_answer_rows(chrome, tmp_path):
    data = dataset(3334, models=("base", "full", "small"), hostile=False)  # 3,334 items x 3 models: 10,002 answers
    page = tmp_path / "big.html"
    page.write_text(render(data), encoding="utf-8")
    t0 = time.monotonic()
    open_page(chrome, page)
    wall = time.monotonic() - t0
    paint = chrome.execute_script(
        "return new Promise(r => requestAnimationFrame(() => r(window.__firstPaint || performance.now())))")
    fcp = chrome.execute_script("const e = performance.getEntriesByName('first-contentful-paint')[0]; return e ? e.startTime : null")
    size = page.stat().st_size / 1e6
    print(f"\n10,002 answer rows ({size:.1f} MB page): first contentful paint {fcp} ms, list drawn at {paint:.0f} ms, "
          f"load {wall * 1000:.0f} ms (headless chromium)")
    assert len(visible_rows(chrome)) == 200  # the first page of the list; the rest on demand
    assert paint < 5000
