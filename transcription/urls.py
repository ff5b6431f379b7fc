from django.urls import path

from . import views

urlpatterns = [
    path("", views.recording_list, name="recording-list"),
    path("upload", views.upload, name="recording-upload"),
    path("live", views.live, name="live"),
    path("<int:pk>/", views.recording_detail, name="recording-detail"),
    path("<int:pk>/transcript", views.transcript_fragment, name="recording-transcript"),
    path("<int:pk>/audio", views.audio, name="recording-audio"),
    path("<int:pk>/delete", views.delete, name="recording-delete"),
    path("<int:pk>/transcript.<str:fmt>", views.export, name="recording-export"),
]
