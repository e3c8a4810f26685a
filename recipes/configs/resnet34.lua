-- ResNet-34 fine-tuned on CUB-200-2011 with the study's recipe.
-- bin/aviary recipes/train.lua --config resnet34 MODEL.weights=resnet34.safetensors   (or: make train CONFIG=resnet34 ARGS='...')
return {
  MODEL = {name = "resnet34", weights = nil, num_classes = 200, freeze_backbone = false},
  DATA = {dir = "data/images", preset = "default", crop = 224, resize = 256},
  TRAIN = {
    batch_size = 16, num_workers = 2, num_epochs = 40,
    optimizer = {type = "SGD", lr = 1e-3, momentum = 0.9, nesterov = true, weight_decay = 0},
    scheduler = {type = "StepLR", step_size = 7, gamma = 0.1},
    early_stopping = {patience = 5, metric = "val_accuracy"},
  },
  SYSTEM = {seed = 1, device = "cpu", threads = 2},
}
