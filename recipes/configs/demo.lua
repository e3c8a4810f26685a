-- The demo (`make demo`): ResNet-18 from scratch on the synthetic 20-species set that
-- recipes/demo.lua draws and prepares into data/demo_images, at 112 px, tuned to learn in a few
-- minutes on two CPU cores: a higher lr than the study's fine-tuning (there are no pretrained
-- weights to protect) with a cosine schedule.
return {
  MODEL = {name = "resnet18", weights = nil, num_classes = 20},
  DATA = {dir = "data/demo_images", preset = "default", crop = 112, resize = 128},
  TRAIN = {
    batch_size = 16, num_workers = 2, num_epochs = 20,
    optimizer = {type = "SGD", lr = 0.03, momentum = 0.9, nesterov = true, weight_decay = 5e-4},
    scheduler = {type = "CosineAnnealingLR"},
    early_stopping = {patience = 0, metric = "val_accuracy"},
  },
  SYSTEM = {seed = 1, device = "cpu", threads = 2},
}
