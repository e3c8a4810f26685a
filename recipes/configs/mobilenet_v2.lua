-- MobileNetV2 fine-tuned on CUB-200-2011 with the study's recipe.
-- bin/aviary recipes/train.lua --config mobilenet_v2 MODEL.weights=mobilenet_v2.safetensors   (or: make train CONFIG=mobilenet_v2 ARGS='...')
return {
  MODEL = {name = "mobilenet_v2", weights = nil, num_classes = 200, freeze_backbone = false},
  DATA = {dir = "data/images", preset = "default", crop = 224, resize = 256},
  TRAIN = {
    batch_size = 16, num_workers = 2, num_epochs = 40,
    optimizer = {type = "SGD", lr = 1e-3, momentum = 0.9, nesterov = true, weight_decay = 0},
    scheduler = {type = "StepLR", step_size = 7, gamma = 0.1},
    early_stopping = {patience = 5, metric = "val_accuracy"},
  },
  SYSTEM = {seed = 1, device = "cpu", threads = 2},
}
