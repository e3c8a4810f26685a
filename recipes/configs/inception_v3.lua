-- Inception v3 (no auxiliary head) fine-tuned on CUB-200-2011 at 299x299, test images resized to 512 as in the study.
-- bin/aviary recipes/train.lua --config inception_v3 MODEL.weights=inception_v3.safetensors   (or: make train CONFIG=inception_v3 ARGS='...')
return {
  MODEL = {name = "inception_v3", weights = nil, num_classes = 200, freeze_backbone = false},
  DATA = {dir = "data/images", preset = "default", crop = 299, resize = 512},
  TRAIN = {
    batch_size = 16, num_workers = 2, num_epochs = 40,
    optimizer = {type = "SGD", lr = 1e-3, momentum = 0.9, nesterov = true, weight_decay = 0},
    scheduler = {type = "StepLR", step_size = 7, gamma = 0.1},
    early_stopping = {patience = 5, metric = "val_accuracy"},
  },
  SYSTEM = {seed = 1, device = "cpu", threads = 2},
}
