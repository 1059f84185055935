"""Real-browser test of the widgets dashboard: Voila serves tests/widgets_dashboard.ipynb on 127.0.0.1,
headless Chromium (the machine's, driven by Playwright) edits a config value, trains a few steps and
checks that the progress, the loss plot and the image grid changed, then that the comparison shows.

Screenshots go to test-artifacts/widgets/: the whole page at each stage, and the dashboard alone as
widgets_config.png, widgets_config_error.png, widgets_train.png and widgets_compare.png. Those four are the
pictures the widgets notebooks (07_widgets, 07a_compare, 07b_train_panel) show on their docs pages: they are
copied, as 256-colour PNGs, into images/ when missing there, or every time with CLAPP_UPDATE_IMAGES=1
(`CLAPP_UPDATE_IMAGES=1 pytest tests/test_widgets_browser.py`, then commit images/widgets_*.png).

The test needs Chromium, Playwright and Voila. Under `CI=true` a missing one FAILS the test with a message naming it
and the fix; elsewhere the test is skipped with that message. Everything it starts is stopped at the end, and that is
checked: Voila's process tree is joined with a timeout, and no thread the test started is left alive."""
import importlib.util, os, shutil, signal, socket, subprocess, sys, threading, time, urllib.error, urllib.request
from pathlib import Path

import psutil
import pytest
import yaml

from clapp.imaging import read_image, write_image

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = Path(__file__).resolve().parent/'widgets_dashboard.ipynb'
ARTIFACTS = ROOT/'test-artifacts'/'widgets'
IMAGES = ROOT/'images'  # the docs' pictures of the panels (committed)
UPDATE_IMAGES = os.environ.get('CLAPP_UPDATE_IMAGES') == '1'
CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                 '--disable-background-networking', '--disable-component-update', '--disable-sync']



def _on_ci() -> bool: return os.environ.get('CI', '').strip().lower() in ('1', 'true', 'yes')


def _missing_tools() -> list:
    "The tools this test needs that this machine lacks, each with its fix"
    missing = []
    if shutil.which('chromium') is None: missing.append('chromium (apt-get install chromium)')
    for mod in ('playwright', 'voila'):
        if importlib.util.find_spec(mod) is None: missing.append(f"{mod} (pip install -e '.[dev]')")
    return missing


def _require_tools():
    "Fail under CI=true, skip elsewhere, when a tool the browser test needs is missing"
    missing = _missing_tools()
    if not missing: return
    msg = 'the browser test needs ' + ', '.join(missing)
    if _on_ci(): pytest.fail(msg + ' (CI=true: a missing tool is a failure, not a skip)', pytrace=False)
    pytest.skip(msg)


def test_missing_tool_fails_on_ci(monkeypatch):
    "Without chromium: a failure naming it under CI=true, a skip naming it elsewhere"
    monkeypatch.setattr(shutil, 'which', lambda name, *a, **k: None)
    monkeypatch.setenv('CI', 'true')
    with pytest.raises(pytest.fail.Exception, match='chromium.*CI=true'): _require_tools()
    monkeypatch.delenv('CI')
    with pytest.raises(pytest.skip.Exception, match='needs chromium'): _require_tools()


def _stop_tree(proc:subprocess.Popen, timeout:float=15) -> list:
    "Stop `proc` and its process group (Voila and its kernels); join them; return any still running"
    try: tree = [psutil.Process(proc.pid)] + psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess: tree = []
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
        try: os.killpg(proc.pid, sig)
        except ProcessLookupError: break
        try: proc.wait(wait)
        except subprocess.TimeoutExpired: continue
        _, alive = psutil.wait_procs(tree, timeout=wait)  # the kernels too
        if not alive: break
    _, alive = psutil.wait_procs(tree, timeout=0)
    def running(p):
        try: return p.status() != psutil.STATUS_ZOMBIE  # a zombie has stopped; its reaper only has not looked yet
        except psutil.NoSuchProcess: return False
    return [p for p in alive if running(p)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _wait_http(url, proc, timeout=90):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None: raise RuntimeError(f'voila exited with code {proc.returncode}')
        try:
            # any answer (even 404) means the server is up; '/' would run the notebook
            urllib.request.urlopen(url + 'api', timeout=5)
            return
        except urllib.error.HTTPError: return  # the server answers
        except OSError: time.sleep(0.3)
    raise TimeoutError(f'voila did not answer on {url} within {timeout}s')


@pytest.fixture
def voila_url(tmp_path):
    "Voila serving the dashboard notebook on 127.0.0.1 (its process group is always stopped and joined at the end)"
    _require_tools()
    port, runs = _free_port(), tmp_path/'runs'
    env = dict(os.environ, CLAPP_DASHBOARD_OUT=str(runs))
    log = open(tmp_path/'voila.log', 'w')
    proc = subprocess.Popen([sys.executable, '-m', 'voila', '--no-browser', f'--port={port}', '--Voila.ip=127.0.0.1',
                             '--ServerApp.open_browser=False', str(NOTEBOOK)],
                            cwd=NOTEBOOK.parent, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f'http://127.0.0.1:{port}/'
        _wait_http(url, proc)
        yield url, runs
    finally:
        left = _stop_tree(proc)
        log.close()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path/'voila.log', ARTIFACTS/'voila.log')
    assert proc.returncode is not None, 'voila is still running'
    assert not left, f'processes left running after the test: {left}'
    with socket.socket() as s:  # nothing answers on the port any more
        assert s.connect_ex(('127.0.0.1', port)) != 0, f'port {port} still answers'


def _img_src(page, cls):
    return page.eval_on_selector(f'.{cls} img, img.{cls}', 'e => e.getAttribute("src") || ""')


def _panel_shot(page, name) -> Path:
    "Screenshot the dashboard into test-artifacts/widgets/widgets_{name}.png; into images/ too when missing or asked"
    shot = ARTIFACTS/f'widgets_{name}.png'
    page.locator('.clapp-dashboard').screenshot(path=str(shot))
    assert shot.stat().st_size > 5_000, f'{shot} looks empty'
    if UPDATE_IMAGES or not (IMAGES/shot.name).exists():
        write_image(IMAGES/shot.name, read_image(shot), palette=256)
    return shot


def test_dashboard_in_browser(voila_url):
    from playwright.sync_api import sync_playwright, expect
    url, runs = voila_url
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    threads0 = set(threading.enumerate())
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=shutil.which('chromium'), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={'width': 1400, 'height': 1800})  # tall: the config form fits
            page.goto(url, timeout=120_000)
            page.wait_for_selector('.clapp-dashboard', timeout=120_000)
            expect(page.locator('.clapp-editor-status')).to_contain_text('valid config')

            # edit a config value in the form: train.max_iterations 8 -> 12
            page.get_by_text('train: training', exact=True).click()
            box = page.locator('.clapp-field-train-max_iterations input')
            expect(box).to_be_visible()
            expect(box).to_have_value('8')
            box.fill('12')
            box.press('Enter')
            expect(page.locator('.clapp-editor-status')).to_contain_text('valid config')
            page.screenshot(path=str(ARTIFACTS/'1_config.png'), full_page=True)
            _panel_shot(page, 'config')

            # an invalid value shows its error beside the field, and fixing it clears the error
            mn = page.locator('.clapp-field-train-min_iterations input')
            mn.fill('50'); mn.press('Enter')
            expect(page.locator('.clapp-error').filter(has_text='train.min_iterations')).to_be_visible()
            expect(page.locator('.clapp-editor-status')).to_contain_text('must be <= train.max_iterations')
            page.screenshot(path=str(ARTIFACTS/'2_config_error.png'), full_page=True)
            _panel_shot(page, 'config_error')
            mn.fill('4'); mn.press('Enter')
            expect(page.locator('.clapp-editor-status')).to_contain_text('valid config')

            # train
            page.locator('.lm-TabBar-tab', has_text='Train').click()
            expect(page.locator('.clapp-train-start')).to_be_visible()
            plot0, grid0 = _img_src(page, 'clapp-train-plot'), _img_src(page, 'clapp-train-grid')
            page.locator('.clapp-train-start').click()
            expect(page.locator('.clapp-train-message')).to_contain_text('Training ended', timeout=150_000)
            expect(page.locator('.clapp-train-info')).to_contain_text('step 12/12')
            page.wait_for_function(
                '([a, b]) => { const p = document.querySelector(".clapp-train-plot img, img.clapp-train-plot");'
                ' const g = document.querySelector(".clapp-train-grid img, img.clapp-train-grid");'
                ' return p && g && p.getAttribute("src") !== a && (g.getAttribute("src") || "") !== b'
                ' && g.naturalWidth > 0; }',
                arg=[plot0, grid0], timeout=30_000)
            page.screenshot(path=str(ARTIFACTS/'3_train.png'), full_page=True)
            _panel_shot(page, 'train')

            # the edited value reached the run
            cfgs = list(runs.glob('**/config.yaml'))
            assert len(cfgs) == 1, cfgs
            assert yaml.safe_load(cfgs[0].read_text())['train']['max_iterations'] == 12

            # the trained model went to the comparison
            page.locator('.lm-TabBar-tab', has_text='Compare').click()
            expect(page.locator('.clapp-compare-info')).to_contain_text('PSNR', timeout=30_000)
            page.wait_for_function('() => { const v = document.querySelector('
                                   '".clapp-compare-view img, img.clapp-compare-view");'
                                   ' return v && v.naturalWidth > 0; }', timeout=30_000)
            page.screenshot(path=str(ARTIFACTS/'4_compare.png'), full_page=True)
            _panel_shot(page, 'compare')
        finally:
            browser.close()
    new = [t for t in threading.enumerate() if t not in threads0]
    for t in new: t.join(timeout=10)  # Playwright's threads end with its context
    assert not [t for t in new if t.is_alive()], f'threads left running: {new}'
    for name in ('config', 'config_error', 'train', 'compare'):  # the pictures the widgets notebooks show
        assert (IMAGES/f'widgets_{name}.png').stat().st_size > 5_000, name
