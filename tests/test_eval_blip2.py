"""The BLIP-2 benchmark configs (configs/visft/eval) run end to end through
tools/test.py on tiny random-weight models (BEiTViT, Q-Former, OPT, a BPE
tokenizer built here) and tiny data in each benchmark's file layout; the ViSFT
backbone swap; the errors for missing inputs."""
import json
import pickle
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from mmpretrain.evaluation import VQAAcc
from mmpretrain.registry import MODELS
from PIL import Image
from tokenizers import ByteLevelBPETokenizer

from visft_mm.checkpoints.io import CheckpointError
from visft_mm.engine import load_module_weights
from visft_mm.utils.cli import build_runner

ROOT = Path(__file__).resolve().parents[1]
TEST_TOOL = ROOT / 'tools/test.py'
EVAL_DIR = ROOT / 'configs/visft/eval'
COCO_CAPTION = EVAL_DIR / 'blip2_opt2.7b_caption_coco-karpathy.py'
NOCAPS = EVAL_DIR / 'blip2_opt2.7b_caption_nocaps.py'
VQAV2 = EVAL_DIR / 'blip2_opt2.7b_vqa_vqav2.py'

VISION_WIDTH, QFORMER_WIDTH, OPT_WIDTH = 24, 16, 16
TINY_VISION = dict(
    arch=dict(
        embed_dims=VISION_WIDTH,
        num_layers=2,
        num_heads=2,
        feedforward_channels=48),
    frozen_stages=2)
TINY_QFORMER = dict(vision_model_width=VISION_WIDTH, num_query_token=4)
TINY_NECK = dict(in_channels=QFORMER_WIDTH, num_classes=OPT_WIDTH)
CAPTION_METRICS = {
    f'caption/{name}'
    for name in ('Bleu_1', 'Bleu_2', 'Bleu_3', 'Bleu_4', 'METEOR', 'ROUGE_L',
                 'CIDEr')
}
# The tiny OPT always prefers " yes" and never ends, so every answer is " yes"
# repeated max_txt_len (10 in the VQA config) times.
ANSWER = ' '.join(['yes'] * 10)


def save_tiny_opt(folder: Path) -> None:
    """An OPT-style slow tokenizer (byte-level BPE, ``</s>`` as BOS/EOS) and a
    one-layer OPT whose next-token logits are constant: " yes" first, the
    caption/answer end ("\\n") never."""
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        ['a photo of a cat', 'Question: is it red? Short answer: yes'] * 4,
        vocab_size=300,
        min_frequency=1,
        special_tokens=['<s>', '<pad>', '</s>', '<unk>'])
    folder.mkdir()
    bpe.save_model(str(folder))
    tokenizer = transformers.GPT2Tokenizer(
        str(folder / 'vocab.json'),
        str(folder / 'merges.txt'),
        bos_token='</s>',
        eos_token='</s>',
        unk_token='</s>',
        pad_token='<pad>',
        add_bos_token=True)
    tokenizer.save_pretrained(folder)
    assert tokenizer.tokenize(' yes') == ['Ġyes']
    config = transformers.OPTConfig(
        vocab_size=len(tokenizer),
        hidden_size=OPT_WIDTH,
        word_embed_proj_dim=OPT_WIDTH,
        num_hidden_layers=1,
        ffn_dim=32,
        num_attention_heads=2,
        max_position_embeddings=128,
        pad_token_id=1,
        bos_token_id=2,
        eos_token_id=2)
    opt = transformers.OPTForCausalLM(config)
    yes = tokenizer.convert_tokens_to_ids('Ġyes')
    newline, = tokenizer('\n', add_special_tokens=False).input_ids
    with torch.no_grad(
    ):  # final norm output = e_0, so logits = column 0 of the embeddings
        opt.model.decoder.final_layer_norm.weight.zero_()
        opt.model.decoder.final_layer_norm.bias.copy_(torch.eye(OPT_WIDTH)[0])
        opt.model.decoder.embed_tokens.weight[:, 0] = 0.
        opt.model.decoder.embed_tokens.weight[yes, 0] = 4.
        opt.model.decoder.embed_tokens.weight[newline, 0] = -100.
    opt.save_pretrained(folder)


def build_tiny_beit(img_size: int, seed: int):
    """The vision backbone of the configs, tiny, for ``img_size`` pixels."""
    torch.manual_seed(seed)
    vision_backbone = Config.fromfile(COCO_CAPTION).model.vision_backbone
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build({
            **vision_backbone,
            **TINY_VISION, 'img_size': img_size
        })


@pytest.fixture(scope='module')
def model_files(tmp_path_factory):
    """Tiny OPT and Q-Former config folders, a BLIP-2 checkpoint in
    mmpretrain's layout (no OPT weights, as the real one) and a different
    vision backbone in BEiTViT layout at 224 pixels, as a converted ViSFT
    EVA-ViT-G."""
    root = tmp_path_factory.mktemp('blip2_models')
    save_tiny_opt(root / 'opt')
    transformers.BertConfig(
        hidden_size=QFORMER_WIDTH,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        vocab_size=30).save_pretrained(root / 'bert')
    model_cfg = Config.fromfile(COCO_CAPTION).model
    opt_folder = str(root / 'opt')
    model_cfg.tokenizer.name_or_path = opt_folder
    model_cfg.text_backbone.name_or_path = opt_folder
    model_cfg.multimodal_backbone.update(
        model_style=str(root / 'bert'), **TINY_QFORMER)
    model_cfg.vision_backbone.update(TINY_VISION)
    model_cfg.vision_neck.update(TINY_NECK)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        blip2 = MODELS.build(model_cfg)
    torch.save(
        dict(state_dict=blip2.state_dict(), meta=dict()), root / 'blip2.pth')
    with torch.no_grad():
        visft_backbone = build_tiny_beit(img_size=224, seed=1)
        for param in visft_backbone.parameters():
            param.normal_(std=0.1)
    torch.save(visft_backbone.state_dict(), root / 'visft_beit.pth')
    return dict(
        opt=root / 'opt',
        bert=root / 'bert',
        blip2=root / 'blip2.pth',
        visft_backbone=root / 'visft_beit.pth')


def save_image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(
        0, 256, (32, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def write_json(path: Path, content) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))


@pytest.fixture(scope='module')
def coco(tmp_path_factory):
    """data/coco: three val2014 images, the Karpathy test split (LAVIS/BLIP
    format) and VQAv2 val questions and answers (visualqa.org format) on
    them."""
    root = tmp_path_factory.mktemp('coco')
    image_ids = [42, 73, 74]
    for image_id in image_ids:
        save_image(
            root / f'val2014/COCO_val2014_{image_id:012d}.jpg', seed=image_id)
    write_json(root / 'annotations/coco_karpathy_test.json', [
        dict(
            image=f'val2014/COCO_val2014_{image_id:012d}.jpg',
            caption=[
                f'a cat number {image_id} on a mat',
                'a small cat sitting on a mat'
            ]) for image_id in image_ids
    ])
    answers = [[ANSWER] * 10, [ANSWER] * 2 + ['no'] * 8, ['two'] * 10]
    questions = [
        dict(
            image_id=image_id,
            question=f'Is picture {image_id} red?',
            question_id=image_id * 1000) for image_id in image_ids
    ]
    write_json(root / 'annotations/v2_OpenEnded_mscoco_val2014_questions.json',
               dict(questions=questions))
    write_json(
        root / 'annotations/v2_mscoco_val2014_annotations.json',
        dict(annotations=[
            dict(
                question_id=q['question_id'],
                image_id=q['image_id'],
                answer_type='yes/no',
                question_type='is the',
                multiple_choice_answer=a[0],
                answers=[
                    dict(
                        answer=text, answer_confidence='yes', answer_id=i + 1)
                    for i, text in enumerate(a)
                ]) for q, a in zip(questions, answers)
        ]))
    return root


@pytest.fixture(scope='module')
def nocaps(tmp_path_factory):
    """data/nocaps: three images and nocaps_val_4500_captions.json (COCO
    captions format) with two references each."""
    root = tmp_path_factory.mktemp('nocaps')
    images = [
        dict(
            id=i,
            file_name=f'{i:016x}.jpg',
            domain=domain,
            height=32,
            width=40,
            coco_url=f'https://example.org/{i:016x}.jpg')
        for i, domain in enumerate(['in-domain', 'near-domain', 'out-domain'])
    ]
    for image in images:
        save_image(root / 'images' / image['file_name'], seed=image['id'])
    write_json(
        root / 'annotations/nocaps_val_4500_captions.json',
        dict(
            images=images,
            annotations=[
                dict(
                    id=2 * image['id'] + k,
                    image_id=image['id'],
                    caption=caption) for image in images for k, caption in
                enumerate(['a bird on a branch', 'yes yes a bird'])
            ]))
    return root


def tiny_config(tmp_path: Path, real_config: Path, model_files: dict,
                data_root: Path, **top_level) -> Path:
    """A config inheriting ``real_config`` with the tiny model, the tiny data
    root and a single-process data loader."""
    path = tmp_path / f'tiny_{real_config.name}'
    opt, bert = str(model_files['opt']), str(model_files['bert'])
    lines = [
        f'_base_ = {str(real_config)!r}',
        f'model = dict(tokenizer=dict(name_or_path={opt!r}),',
        f'             text_backbone=dict(name_or_path={opt!r}),',
        f'             multimodal_backbone=dict(model_style={bert!r},',
        f'                                      **{TINY_QFORMER!r}),',
        f'             vision_backbone={TINY_VISION!r},',
        f'             vision_neck={TINY_NECK!r})',
        'test_dataloader = dict(batch_size=2, num_workers=0,',
        '                       persistent_workers=False,',
        f'                       dataset=dict(data_root={str(data_root)!r}))',
        *(f'{key} = {value!r}' for key, value in top_level.items()),
    ]
    path.write_text('\n'.join(lines) + '\n')
    return path


def run_test_tool(monkeypatch, *args) -> dict:
    """``python tools/test.py ARGS`` in this process; returns the test
    metrics."""
    metrics = {}
    test = Runner.test

    def test_and_keep_metrics(runner):
        metrics.update(test(runner))
        return metrics

    monkeypatch.setattr(Runner, 'test', test_and_keep_metrics)
    monkeypatch.setattr(sys, 'argv', [str(TEST_TOOL), *map(str, args)])
    runpy.run_path(str(TEST_TOOL), run_name='__main__')
    return metrics


@pytest.mark.parametrize(
    'path,model_type', [(COCO_CAPTION, 'Blip2Caption'),
                        (NOCAPS, 'Blip2Caption'), (VQAV2, 'Blip2VQA')],
    ids=lambda x: getattr(x, 'stem', x))
def test_config_is_an_mmpretrain_blip2_evaluation(path, model_type):
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'mmpretrain' and cfg.model.type == model_type
    assert cfg.model.vision_backbone.arch.num_layers == 39
    # the last of 39 blocks, as LAVIS
    assert cfg.model.vision_backbone.out_indices == -1
    assert cfg.backbone_checkpoint is None
    assert cfg.custom_hooks == [dict(type='visft_mm.BackboneCheckpointHook')]
    assert cfg.train_dataloader is None and cfg.val_dataloader is None
    if model_type == 'Blip2VQA':
        assert cfg.model.prompt == 'Question: {} Short answer:'
        assert cfg.test_evaluator == dict(type='VQAAcc')
    else:
        assert cfg.test_evaluator.type == 'visft_mm.CaptionMetric'


def test_coco_karpathy_captioning_end_to_end(tmp_path, monkeypatch,
                                             model_files, coco):
    config = tiny_config(tmp_path, COCO_CAPTION, model_files, coco)
    metrics = run_test_tool(monkeypatch, config, model_files['blip2'],
                            '--work-dir', tmp_path / 'work')
    assert set(metrics) == CAPTION_METRICS
    assert all(np.isfinite(value) for value in metrics.values())


def test_nocaps_captioning_end_to_end_captions_each_image_once(
        tmp_path, monkeypatch, model_files, nocaps):
    config = tiny_config(
        tmp_path,
        NOCAPS,
        model_files,
        nocaps,
        test_evaluator=dict(
            ann_file=str(nocaps /
                         'annotations/nocaps_val_4500_captions.json')))
    metrics = run_test_tool(monkeypatch, config, model_files['blip2'],
                            '--work-dir', tmp_path / 'work', '--out',
                            tmp_path / 'captions.pkl')
    assert set(metrics) == CAPTION_METRICS
    predictions = pickle.loads((tmp_path / 'captions.pkl').read_bytes())
    assert sorted(p['image_id']
                  for p in predictions) == [0, 1, 2]  # 6 references, 3 images
    assert {p['pred_caption'].split()[0] for p in predictions} == {'yes'}


def test_vqav2_end_to_end_with_a_visft_backbone_gives_hand_computed_accuracy(
        tmp_path, monkeypatch, model_files, coco):
    config = tiny_config(tmp_path, VQAV2, model_files, coco)
    metrics = run_test_tool(monkeypatch, config, model_files['blip2'],
                            '--work-dir', tmp_path / 'work', '--out',
                            tmp_path / 'answers.pkl', '--backbone',
                            str(model_files['visft_backbone']))
    answers = pickle.loads((tmp_path / 'answers.pkl').read_bytes())
    assert [a['pred_answer'] for a in answers] == [ANSWER] * 3
    # min(1, matching answers / 3): 10 of 10, 2 of 10, 0 of 10
    assert metrics['VQA/acc'] == pytest.approx(100 * (1 + 2 / 3 + 0) / 3)


def test_vqa_accuracy_normalises_answers_as_the_vqa_script():
    metric = VQAAcc()
    metric.process(None, [
        dict(
            pred_answer='Two.',
            gt_answer=['2', 'two dogs'],
            gt_answer_weight=[0.3, 0.7]),
        dict(
            pred_answer='a dog',
            gt_answer=['dog', 'cat'],
            gt_answer_weight=[0.1, 0.9]),
    ])
    # "Two." -> "2": weight 0.3 -> 1; "a dog" -> "dog": weight 0.1 -> 1/3
    assert metric.compute_metrics(metric.results)['acc'] == pytest.approx(
        100 * (1 + 1 / 3) / 2)


def test_backbone_checkpoint_replaces_exactly_the_vision_weights(
        tmp_path, model_files, coco):
    cfg = Config.fromfile(
        tiny_config(tmp_path, COCO_CAPTION, model_files, coco))
    cfg.update(
        work_dir=str(tmp_path / 'work'),
        load_from=str(model_files['blip2']),
        backbone_checkpoint=str(model_files['visft_backbone']))
    runner = build_runner(cfg)
    runner.load_or_resume()
    images = torch.randn(1, 3, 364, 364)
    with torch.no_grad():
        blip2_features = runner.model.vision_backbone(images)[0]
        runner.call_hook('before_test')
        features = runner.model.vision_backbone(images)[0]
        reference = build_tiny_beit(img_size=364, seed=2)
        reference.load_state_dict(torch.load(model_files['visft_backbone']))
        expected = reference(images)[0]
    torch.testing.assert_close(features, expected)
    assert not torch.allclose(features, blip2_features)
    blip2 = torch.load(model_files['blip2'])['state_dict']
    weights = runner.model.state_dict()
    others = [key for key in blip2 if not key.startswith('vision_backbone.')]
    assert others and all(
        torch.equal(weights[key], blip2[key]) for key in others)


def test_backbone_file_that_does_not_fit_is_reported_key_by_key(model_files):
    backbone = build_tiny_beit(img_size=224, seed=0)
    weights = torch.load(model_files['visft_backbone'])
    weights.pop('cls_token')
    weights['layers.2.attn.qkv.weight'] = torch.zeros(72, VISION_WIDTH)
    weights['layers.0.ln1.weight'] = torch.ones(VISION_WIDTH + 1)
    with pytest.raises(CheckpointError) as error:
        load_module_weights(backbone, weights, 'visft.pth')
    message = str(error.value)
    assert 'missing 1 (cls_token)' in message
    assert 'unexpected 1 (layers.2.attn.qkv.weight)' in message
    assert ('shape mismatches 1 (layers.0.ln1.weight (25,) in the file '
            'vs (24,))') in message


@pytest.mark.parametrize(
    'path', [COCO_CAPTION, NOCAPS, VQAV2], ids=lambda p: p.stem)
def test_missing_inputs_are_one_error_saying_where_and_how(
        path, tmp_path, monkeypatch):
    monkeypatch.chdir(
        tmp_path)  # the configs' default relative paths do not exist here
    with pytest.raises(SystemExit) as error:
        run_test_tool(monkeypatch, path, '--cfg-options',
                      'backbone_checkpoint=visft.pth')
    message = str(error.value)
    assert message.startswith('error: missing input files')
    blip2_checkpoint = (
        'checkpoints/blip2-opt2.7b_3rdparty_pretrain_20230505-b51db4e1.pth')
    for expected in (
            blip2_checkpoint,
            'https://download.openmmlab.com/mmclassification/v1/blip2/',
            'not found at checkpoints/opt-2.7b',
            'huggingface-cli download facebook/opt-2.7b',
            'not found at checkpoints/bert-base-uncased',
            'not found at visft.pth', 'visft2mmpretrain.py'):
        assert expected in message
    data = {
        COCO_CAPTION:
        ['data/coco/annotations/coco_karpathy_test.json', 'data/coco/val2014'],
        NOCAPS: [
            'data/nocaps/annotations/nocaps_val_4500_captions.json',
            'data/nocaps/images'
        ],
        VQAV2: [
            'data/coco/annotations/v2_OpenEnded_mscoco_val2014_questions.json',
            'data/coco/annotations/v2_mscoco_val2014_annotations.json',
            'data/coco/val2014'
        ]
    }[path]
    assert all(f'not found at {expected} ' in message for expected in data)


def test_only_the_missing_inputs_are_reported(tmp_path, monkeypatch,
                                              model_files):
    config = tiny_config(tmp_path, VQAV2, model_files, tmp_path / 'empty')
    with pytest.raises(SystemExit) as error:
        run_test_tool(monkeypatch, config, model_files['blip2'])
    lines = str(error.value).splitlines()[1:]
    assert len(lines) == 3 and all(
        str(tmp_path / 'empty') in line for line in lines)
    assert 'visualqa.org' in lines[0] and 'val2014.zip' in lines[2]
