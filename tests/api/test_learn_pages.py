"""The /learn pages, server side (app/pages.py COURSE and lesson()): the index reads as the course,
each lesson links to its neighbours, the sample photos are served, and a lesson that needs a network
says so when the models folder has none. The lessons themselves run in tests/browser/test_learn_*.py."""
from __future__ import annotations

import json
import re
import shutil

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.pages import COURSE
from app.settings import Settings

LESSONS = ["/learn/line", "/learn/convolution", "/learn/pca"]


def page_config(html: str) -> dict:
    return json.loads(re.search(r'<script type="application/json" id="belka-config">(.*?)</script>', html, re.S)[1])


@pytest.fixture(scope="module")
def client(small_mobilenet, small_detector, tmp_path_factory):
    models = tmp_path_factory.mktemp("learn-pages") / "models"
    shutil.copytree(small_mobilenet["dir"], models / "mobilenet")
    shutil.copytree(small_detector["dir"], models / "squares")
    return TestClient(create_app(Settings(models_dir=models)))


@pytest.fixture(scope="module")
def empty(tmp_path_factory):
    return TestClient(create_app(Settings(models_dir=tmp_path_factory.mktemp("none"))))


def test_the_index_is_the_course_in_order_and_every_page_links_to_it(client):
    html = client.get("/learn").text
    links = re.findall(r'<a class="course-title" href="([^"]+)">', html)
    assert links == [url for url, _, _ in COURSE]
    assert links[:2] == ["/learn/line", "/learn/convolution"] and links[-1] == "/teach"
    for path in ["/", "/detect", "/teach", "/learn", *LESSONS]:
        assert '<a href="/learn">Learn</a>' in client.get(path).text, path


@pytest.mark.parametrize("path", LESSONS)
def test_each_lesson_links_its_neighbours_and_serves_its_sample_photos(client, path):
    response = client.get(path)
    assert response.status_code == 200
    html = response.text
    index = [url for url, _, _ in COURSE].index(path)
    assert f'href="{COURSE[index - 1][0]}"' in html and f'href="{COURSE[index + 1][0]}"' in html
    assert f"Lesson {index + 1} of the course" in html
    assert "What just happened" in html
    samples = page_config(html)["samples"]
    assert len(samples) >= 10 and samples[0]["title"]
    photo = client.get(samples[0]["url"])
    assert photo.status_code == 200 and photo.headers["content-type"] == "image/jpeg"
    assert "immutable" in photo.headers["cache-control"]


def test_lessons_with_a_network_pick_a_classifier_and_say_when_there_is_none(client, empty):
    for path in ["/learn/convolution", "/learn/pca"]:
        assert page_config(client.get(path).text)["model"] == "mobilenet"
        note = client.get(f"{path}?model=squares").text
        assert "is an object detector, not an image classifier" in note
        assert page_config(empty.get(path).text)["model"] is None
    assert "No network yet" in empty.get("/learn/pca").text
    assert empty.get("/learn/line").status_code == 200
